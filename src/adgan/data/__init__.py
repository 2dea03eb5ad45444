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
from pathlib import Path

from adgan.data.cifar10 import load_cifar10
from adgan.data.digits import load_digits
from adgan.data.folder import iter_image_files, load_folder, read_image
from adgan.data.imageset import ImageSet
from adgan.data.mnist import load_mnist
from adgan.data.splits import OneVsAll, one_vs_all
from adgan.data.transforms import (
    center_crop_resize,
    convert_channels,
    resize_images,
    to_float,
    to_uint8,
)
from adgan.errors import ConfigError, DataError

DATASETS = ("digits", "mnist", "cifar10")
ENV_VAR = "ADGAN_DATA"


def resolve_data_root(data_root: str | os.PathLike[str] | None) -> Path:
    """Return the data folder: ``data_root`` if given, else ``$ADGAN_DATA``; it must exist."""
    source = "data_root"
    if data_root is None or str(data_root) == "":
        data_root = os.environ.get(ENV_VAR) or None
        source = ENV_VAR
    if data_root is None:
        raise DataError(f"data_root: not given, and {ENV_VAR} is not set")
    root = Path(data_root).expanduser()
    if not root.exists():
        raise DataError(f"{source}: data folder {root} does not exist")
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
