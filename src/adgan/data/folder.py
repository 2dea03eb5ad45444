"""Folders of PNG/JPEG/BMP/GIF/WebP images, optionally one sub-folder per class."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import features

from adgan.data.decode import ImageError, decode_image
from adgan.data.imageset import ImageSet
from adgan.errors import ConfigError, DataError
from adgan.params import check_image_size

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif"} | ({".webp"} if features.check("webp") else set())
)


def iter_image_files(path: str | os.PathLike[str]) -> list[Path]:
    """Return the image files under ``path``, recursively, sorted by relative path.

    Hidden files and folders (names starting with ".") are ignored.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [
            Path(dirpath, f)
            for f in filenames
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_image(path: str | os.PathLike[str], channels: int, size: int | None) -> np.ndarray:
    """Read one image as uint8 (C, H, W) with ``channels`` 1 or 3, optionally resized.

    With ``size``, the largest centred square is resized to ``size`` x ``size`` (bicubic).
    Only the first frame of animated files is read.
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    return decode_image(Path(path), channels, size)


def load_folder(
    path: str | os.PathLike[str],
    channels: int | None = None,
    size: int | None = None,
    labelled: bool | None = None,
    on_error: str = "raise",
    shape: tuple[int, int, int] | None = None,
) -> ImageSet:
    """Load every image under ``path`` into an :class:`ImageSet`.

    Parameters
    ----------
    path : path-like
        Folder of images. When sub-folders hold images, each first-level sub-folder is a class
        (sorted names give the label indices) and images directly in ``path`` are an error.
    channels : {1, 3} or None
        Convert to gray ('L') or 'RGB'; None gives 1 if every image is gray, else 3.
    size : int or None
        Centre-crop to a square and resize to ``size`` x ``size``; None requires every image to
        have the same size.
    labelled : bool or None
        None infers it from the layout; False ignores sub-folders and returns no labels.
    on_error : {"raise", "skip"}
        What to do with an unreadable image: raise :class:`DataError`, or leave it out and
        record ``(path, reason)`` in the result's ``skipped``.
    shape : (C, H, W) or None
        Instead of ``channels`` and ``size``: every image must be this shape as it is (gray
        for C 1, colour for 3), never converted or resized; another is unreadable.
    """
    if shape is not None and (channels is not None or size is not None):
        raise ConfigError("shape: give shape, or channels and size, not both")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1, 3 or None, got {channels}")
    if size is not None:
        check_image_size(size)
    root = Path(path)
    files = iter_image_files(root)
    if not files:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {root}")
    rel = [f.relative_to(root).as_posix() for f in files]
    in_subfolders = ["/" in r for r in rel]
    if labelled is None:
        labelled = any(in_subfolders)
    classes: list[str] | None = None
    if labelled:
        if not any(in_subfolders):
            raise DataError(f"labelled=True but {root} has no class sub-folders holding images")
        loose = [r for r, sub in zip(rel, in_subfolders, strict=True) if not sub]
        if loose:
            raise DataError(
                f"{root / loose[0]} lies beside the class sub-folders of {root}; "
                "move it into a class folder or pass labelled=False"
            )
        classes = sorted({r.split("/", 1)[0] for r in rel})

    arrays: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    for i, f in enumerate(files):
        try:
            arr = decode_image(f, channels, size)
            if shape is not None and arr.shape != tuple(shape):
                raise ImageError(
                    f, f"{describe_shape(arr.shape)} image, expected {describe_shape(shape)} ones"
                )
        except ImageError as e:
            if on_error == "raise":
                raise
            logger.warning("skipping %s", e)
            skipped.append((str(f), e.reason))
            continue
        if size is None and arrays and arr.shape[1:] != arrays[0].shape[1:]:
            first = files[kept[0]]
            raise DataError(
                f"{f} is {arr.shape[2]}x{arr.shape[1]} but {first} is "
                f"{arrays[0].shape[2]}x{arrays[0].shape[1]}; pass size to resize all images"
            )
        arrays.append(arr)
        kept.append(i)
    if not arrays:
        raise DataError(f"none of the {len(files)} images under {root} could be read")

    if channels is None:
        # Gray images were read with one channel; any colour image makes the whole set RGB.
        if any(a.shape[0] == 3 for a in arrays):
            arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    images = np.stack(arrays)  # (N, C, H, W)
    labels = None
    if classes is not None:
        class_of = {c: k for k, c in enumerate(classes)}
        labels = np.array([class_of[rel[i].split("/", 1)[0]] for i in kept], dtype=np.int64)
    logger.info("loaded %d images %s from %s", len(images), images.shape[1:], root)
    return ImageSet(images, labels, [rel[i] for i in kept], classes, skipped)


def describe_shape(shape) -> str:
    """'32x32 colour' for (3, 32, 32)."""
    c, h, w = shape
    return f"{w}x{h} {'gray' if c == 1 else 'colour'}"
