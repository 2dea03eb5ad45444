"""MNIST from its four IDX files (plain or gzip), parsed with numpy."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np

from adgan import params
from adgan.data.imageset import ImageSet
from adgan.errors import DataError

logger = logging.getLogger(__name__)

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
CLASSES = [str(i) for i in range(10)]


def load_mnist(root: str | os.PathLike[str]) -> tuple[ImageSet, ImageSet]:
    """Load MNIST as (train, test): uint8 images (N, 1, 28, 28) and int64 labels.

    ``root`` may be the folder holding the IDX files, torchvision's root (``MNIST/raw/``
    inside it) or a parent of ``mnist/``; each file may be plain or ``.gz``.
    """
    folder = find_mnist_folder(Path(root))
    logger.info("loading MNIST from %s", folder)
    return _load_split(folder, "train"), _load_split(folder, "test")


def find_mnist_folder(root: Path) -> Path:
    """Return the first candidate folder under ``root`` that holds all four IDX files."""
    candidates = [root, root / "MNIST" / "raw", root / "mnist", root / "mnist" / "MNIST" / "raw"]
    for folder in candidates:
        if all(_find_file(folder, stem) for pair in FILES.values() for stem in pair):
            return folder
    # Name what is missing in the most complete candidate rather than just "not found".
    stems = [stem for pair in FILES.values() for stem in pair]
    best = max(candidates, key=lambda f: sum(_find_file(f, s) is not None for s in stems))
    missing = [s for s in stems if _find_file(best, s) is None]
    if len(missing) < len(stems):
        raise DataError(f"MNIST folder {best} lacks {', '.join(missing)} (plain or .gz)")
    raise DataError(
        f"MNIST IDX files ({', '.join(stems)}, plain or .gz) not found in any of: "
        + ", ".join(str(f) for f in candidates)
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read a uint8 IDX file (plain or gzip) whose header must carry ``magic``."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(raw) < expected:
        raise DataError(
            f"{path}: truncated, {len(raw)} bytes but the header {dims} needs {expected}"
        )
    if len(raw) > expected:
        raise DataError(f"{path}: {len(raw) - expected} unexpected bytes after the {dims} data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _load_split(folder: Path, split: str) -> ImageSet:
    images_path, labels_path = (_find_file(folder, stem) for stem in FILES[split])
    assert images_path is not None and labels_path is not None  # checked by find_mnist_folder
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} outside 0..9")
    return ImageSet(images[:, None], labels, None, list(CLASSES))  # (N, 1, H, W)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_bytes(path: Path) -> bytes:
    """The file's bytes (decompressed for .gz), at most ``params.MAX_DATASET_BYTES``: a
    larger file, or a small .gz that inflates past it, is refused once that much is read."""
    limit = params.MAX_DATASET_BYTES
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read(limit + 1)
        else:
            with path.open("rb") as f:
                raw = f.read(limit + 1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip file ({e})") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    if len(raw) > limit:
        raise DataError(f"{path}: over the {limit} bytes read from one dataset file")
    return raw
