"""CIFAR-10 from its python pickle batches, read with an unpickler that cannot run code."""

from __future__ import annotations

import codecs
import io
import logging
import os
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from adgan import params
from adgan.data.imageset import ImageSet
from adgan.errors import DataError

try:
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
# Used only when batches.meta is absent: the names it holds in the official release.
DEFAULT_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# The only globals a CIFAR batch needs: numpy array reconstruction (numpy 1.x and 2.x names,
# protocols 2-5) and the helper Python 3 uses for bytes at protocol 2. Every other global,
# os.system included, is refused, so a hostile file cannot run code while it is read.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def load_cifar10(root: str | os.PathLike[str]) -> tuple[ImageSet, ImageSet]:
    """Load CIFAR-10 as (train, test): uint8 images (N, 3, 32, 32) and int64 labels.

    ``root`` may hold ``cifar-10-batches-py/``, be that folder, or hold (or be) the
    ``cifar-10-python.tar.gz`` archive, which is read in memory without extracting it.
    """
    root = Path(root)
    if (root / FOLDER).is_dir():
        return _load(_FolderSource(root / FOLDER))
    if (root / TRAIN_BATCHES[0]).is_file() or (root / TEST_BATCH).is_file():
        return _load(_FolderSource(root))
    archive = root if root.is_file() else root / ARCHIVE
    if archive.is_file():
        return _load(_TarSource(archive))
    raise DataError(
        f"CIFAR-10 not found: expected {root / FOLDER}/, batch files in {root}, or {root / ARCHIVE}"
    )


def _load(source: _FolderSource | _TarSource) -> tuple[ImageSet, ImageSet]:
    logger.info("loading CIFAR-10 from %s", source.where)
    classes = DEFAULT_CLASSES
    if source.has(META):
        meta = _unpickle(source.read(META), source.name(META))
        names = meta.get(b"label_names")
        if not isinstance(names, list) or len(names) != 10:
            raise DataError(f"{source.name(META)}: b'label_names' is not a list of 10 names")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    else:
        logger.warning("%s missing; using the standard class names", source.name(META))
    parts = [_read_batch(source, b) for b in TRAIN_BATCHES]
    train = ImageSet(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        None,
        list(classes),
    )
    test = ImageSet(*_read_batch(source, TEST_BATCH), None, list(classes))
    return train, test


def _read_batch(source: _FolderSource | _TarSource, batch: str) -> tuple[np.ndarray, np.ndarray]:
    where = source.name(batch)
    if not source.has(batch):
        raise DataError(f"CIFAR-10 batch {where} is missing")
    d = _unpickle(source.read(batch), where)
    data, labels = d.get(b"data"), d.get(b"labels")
    if not isinstance(data, np.ndarray):
        raise DataError(f"{where}: b'data' must be a uint8 array, got {type(data).__name__}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{where}: b'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    if not data.flags.writeable:  # protocol-5 pickles give read-only views of the stream
        data = data.copy()
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: b'labels' is not a list of integers") from e
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {len(data)} images but b'labels' has shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels  # R, G, B planes -> (N, 3, 32, 32)


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{where}: not a valid CIFAR-10 pickle ({e})") from e
    except Exception as e:  # a damaged stream can fail in many ways inside pickle or numpy
        raise DataError(f"{where}: corrupt pickle ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict, got {type(obj).__name__}")
    return obj


class _FolderSource:
    def __init__(self, folder: Path) -> None:
        self.where = folder

    def name(self, member: str) -> str:
        return str(self.where / member)

    def has(self, member: str) -> bool:
        return (self.where / member).is_file()

    def read(self, member: str) -> bytes:
        limit = params.MAX_DATASET_BYTES
        try:
            with (self.where / member).open("rb") as f:
                raw = f.read(limit + 1)
        except OSError as e:
            raise DataError(f"{self.name(member)}: cannot read ({e.strerror or e})") from e
        if len(raw) > limit:
            raise DataError(f"{self.name(member)}: over the {limit} bytes read from one file")
        return raw


class _TarSource:
    """The batches of a tar archive, read into memory in one pass; nothing is written to disk."""

    def __init__(self, archive: Path) -> None:
        self.where = archive
        wanted = {*TRAIN_BATCHES, TEST_BATCH, META}
        self._members: dict[str, bytes] = {}
        try:
            # Stream members in archive order: seeking back in a gzip stream re-reads it all.
            with tarfile.open(archive, "r|*") as tar:
                for m in tar:
                    # Match base names so the archive's top folder name does not matter.
                    if m.isfile() and Path(m.name).name in wanted:
                        if m.size > params.MAX_DATASET_BYTES:
                            raise DataError(
                                f"{archive}:{m.name}: {m.size} bytes, over the "
                                f"{params.MAX_DATASET_BYTES} read from one file"
                            )
                        f = tar.extractfile(m)
                        assert f is not None  # regular files always have a stream
                        self._members[Path(m.name).name] = f.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{archive}: corrupt or unreadable tar archive ({e})") from e

    def name(self, member: str) -> str:
        return f"{self.where}:{member}"

    def has(self, member: str) -> bool:
        return member in self._members

    def read(self, member: str) -> bytes:
        return self._members[member]
