"""Dataset loaders: real image datasets in their standard on-disk formats, as uint8 arrays.

Every loader returns :class:`ImageSet` objects holding uint8 images of shape (N, C, H, W);
:func:`one_vs_all` turns a labelled (train, test) pair into the paper's one-versus-all task.

Examples
--------
>>> from adgan.data import load_dataset, one_vs_all
>>> train, test = load_dataset("digits")
>>> task = one_vs_all(train, test, normal_class=0, n_test=200)
>>> task.x_train.shape[1:], int(task.y_test.sum()) > 0
((1, 8, 8), True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adgan.errors import ConfigError, DataError


@dataclass
class ImageSet:
    """Images with optional labels, per-image names and class names.

    Attributes
    ----------
    images : ndarray
        uint8, shape (N, C, H, W).
    labels : ndarray or None
        int64, shape (N,); None when unlabelled.
    names : list of str or None
        Per-image id (the file path relative to the folder for folder datasets).
    classes : list of str or None
        Class names indexed by label, when known.
    skipped : list of (str, str)
        (path, reason) of files left out while loading with ``on_error="skip"``.
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    names: list[str] | None = None
    classes: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"images must have shape (N, C, H, W), got {self.images.shape}")
        n = len(self.images)
        if self.labels is not None and len(self.labels) != n:
            raise DataError(f"{len(self.labels)} labels for {n} images")
        if self.names is not None and len(self.names) != n:
            raise DataError(f"{len(self.names)} names for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray | list[int] | slice) -> ImageSet:
        """Return the images selected by ``idx`` (indices, boolean mask or slice)."""
        # Resolve masks and slices to positions once so names stay aligned with the arrays.
        pos = np.arange(len(self))[idx]
        return ImageSet(
            images=self.images[pos],
            labels=None if self.labels is None else self.labels[pos],
            names=None if self.names is None else [self.names[i] for i in pos],
            classes=None if self.classes is None else list(self.classes),
            skipped=list(self.skipped),
        )


# The loaders import ImageSet from this module, so they are imported after its definition.
from adgan.data.cifar10 import load_cifar10  # noqa: E402
from adgan.data.digits import load_digits  # noqa: E402
from adgan.data.folder import iter_image_files, load_folder, read_image  # noqa: E402
from adgan.data.mnist import load_mnist  # noqa: E402
from adgan.data.splits import OneVsAll, one_vs_all  # noqa: E402
from adgan.data.transforms import (  # noqa: E402
    center_crop_resize,
    convert_channels,
    resize_images,
    to_float,
    to_uint8,
)

DATASETS = ("digits", "mnist", "cifar10")
ENV_VAR = "ADGAN_DATA"


def resolve_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    """Return the data folder: ``data_root`` if given, else ``$ADGAN_DATA``; it must exist."""
    source = "--data-root"
    if data_root is None or str(data_root) == "":
        data_root = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if data_root is None:
        raise DataError(f"--data-root not given and {ENV_VAR} not set")
    root = Path(data_root).expanduser()
    if not root.exists():
        raise DataError(f"data root {root} (from {source}) does not exist")
    return root


def load_dataset(
    name: str, data_root: str | os.PathLike[str] | None = None
) -> tuple[ImageSet, ImageSet]:
    """Load a named dataset as (train, test); ``digits`` is embedded and needs no data root."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "digits":
        return load_digits()
    root = resolve_data_root(data_root)
    return load_mnist(root) if name == "mnist" else load_cifar10(root)


__all__ = [
    "DATASETS",
    "ENV_VAR",
    "ImageSet",
    "OneVsAll",
    "center_crop_resize",
    "convert_channels",
    "iter_image_files",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_folder",
    "load_mnist",
    "one_vs_all",
    "read_image",
    "resize_images",
    "resolve_data_root",
    "to_float",
    "to_uint8",
]
