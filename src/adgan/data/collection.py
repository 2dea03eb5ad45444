"""Unlabelled image collections read one image at a time: a folder tree of image files, or
an LSUN-style lmdb database (keys -> encoded image bytes), never loaded whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from adgan.data.decode import ImageError, decode_image
from adgan.data.folder import describe_shape, iter_image_files
from adgan.errors import ConfigError, DataError
from adgan.params import check_image_size


def is_lmdb(path: str | Path) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / "data.mdb").is_file()) or (p.is_file() and p.suffix == ".mdb")


class Collection:
    """Ordered ids and a reader; ``read(id)`` raises DataError for a bad image.

    With ``exact`` the images are read as they are and one whose shape is not ``channels`` x
    ``size`` x ``size`` is a bad image (``score``: a model's input, never converted);
    without, every image is converted and resized to it (``rank``)."""

    def __init__(self, path: str | Path, channels: int, size: int | None, exact: bool = False):
        if exact and size is None:
            raise ConfigError("size: exact shapes need a size")
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {channels}")
        if size is not None:
            check_image_size(size)
        self.path = Path(path)
        self.source = str(self.path.resolve())  # what a ranking of it records
        self.channels, self.size, self.exact = channels, size, exact
        if is_lmdb(self.path):
            self.kind = "lmdb"
            self._env = _open_lmdb(self.path)
        elif self.path.is_dir():
            self.kind = "folder"
            self._files = {
                f.relative_to(self.path).as_posix(): f for f in iter_image_files(self.path)
            }
        else:
            raise DataError(f"{self.path}: expected a folder of images or an lmdb database")

    def __len__(self) -> int:
        if self.kind == "lmdb":
            return int(self._env.stat()["entries"])
        return len(self._files)

    def ids(self) -> Iterator[str]:
        if self.kind == "folder":
            yield from self._files
            return
        with self._env.begin() as txn:
            for key in txn.cursor().iternext(keys=True, values=False):
                yield key.decode("utf-8", errors="surrogateescape")

    def read(self, id_: str) -> np.ndarray:
        channels, size = (None, None) if self.exact else (self.channels, self.size)
        if self.kind == "folder":
            path = self._files.get(id_)
            if path is None:
                raise ImageError(Path(id_), f"not in {self.path}")
            arr, where = decode_image(path, channels, size), path
        else:
            with self._env.begin() as txn:
                data = txn.get(id_.encode("utf-8", errors="surrogateescape"))
            if data is None:
                raise ImageError(Path(id_), "key not found in the database")
            arr, where = decode_image(data, channels, size, id_), id_
        want = (self.channels, self.size, self.size)
        if self.exact and arr.shape != want:
            raise ImageError(
                where, f"{describe_shape(arr.shape)} image, expected {describe_shape(want)} ones"
            )
        return arr

    def load(self, limit: int | None = None) -> tuple[np.ndarray, list[str]]:
        """Read up to ``limit`` images into memory (for training); bad images are skipped."""
        imgs, names = [], []
        for id_ in self.ids():
            if limit is not None and len(imgs) >= limit:
                break
            try:
                imgs.append(self.read(id_))
                names.append(id_)
            except DataError:
                continue
        if not imgs:
            raise DataError(f"{self.path}: no readable images")
        return np.stack(imgs), names


class ArrayCollection:
    """Images already in memory (a dataset's split) as a collection: ids "0", "1", ...;
    ``source`` names them (e.g. "digits test")."""

    def __init__(self, images: np.ndarray, source: str, shape: tuple[int, ...] | None = None):
        if shape is not None and tuple(images.shape[1:]) != tuple(shape):
            raise ConfigError(
                f"{source}: images of shape {tuple(images.shape[1:])}, but the detector takes "
                f"{tuple(shape)}"
            )
        self.images, self.source = images, source

    def __len__(self) -> int:
        return len(self.images)

    def ids(self) -> Iterator[str]:
        return (str(i) for i in range(len(self.images)))

    def read(self, id_: str) -> np.ndarray:
        return self.images[int(id_)]


def _open_lmdb(path: Path):
    try:
        import lmdb
    except ImportError as exc:
        raise ConfigError(
            f"{path}: reading lmdb databases needs the lmdb package (pip install 'adgan[lmdb]')"
        ) from exc
    try:
        return lmdb.open(
            str(path),
            readonly=True,
            lock=False,
            readahead=False,
            meminit=False,
            subdir=path.is_dir(),
            max_readers=1,
        )
    except lmdb.Error as exc:
        raise DataError(f"{path}: not a readable lmdb database ({exc})") from exc
