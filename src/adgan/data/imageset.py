"""``ImageSet``: images with optional labels, names and class names, as every loader
returns them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from adgan.errors import DataError


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
