"""scikit-learn's embedded 8x8 digits: a small real dataset that needs no download."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split

from adgan.data.imageset import ImageSet
from adgan.errors import ConfigError


def load_digits(test_fraction: float = 1 / 3, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Load the 1797 digits as (train, test) uint8 images of shape (N, 1, 8, 8).

    The dataset has no official split, so a fixed stratified one is drawn with ``seed``;
    both parts keep the original order. Values 0..16 are scaled to 0..255.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    bunch = _sk_load_digits()
    # Half-up rounding of v * 255 / 16 so that 16 maps to 255 and 8 to 128.
    images = np.floor(bunch.data * 255.0 / 16.0 + 0.5).astype(np.uint8).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )
    full = ImageSet(images, labels, None, [str(i) for i in range(10)])
    return full.subset(np.sort(train_idx)), full.subset(np.sort(test_idx))
