"""Shared fixtures: tiny datasets written to disk in their real formats."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

MNIST_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
               b"dog", b"frog", b"horse", b"ship", b"truck"]  # fmt: skip


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format: magic 0x0000 08 ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture(scope="session", autouse=True)
def _native_cache(tmp_path_factory):
    """The search's compiled kernel is built into a directory of this session, not the
    user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADGAN_CACHE_DIR", str(tmp_path_factory.mktemp("adgan-cache")))
        yield


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """30 grayscale 8x8 uint8 images (N, 1, 8, 8): dim noise with one bright vertical bar, a
    normal class small enough for the detectors' tiny settings."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=(30, 1, 8, 8)).astype(np.uint8)
    x[:, :, 1:7, 3:5] = 220
    return x


@pytest.fixture(scope="session")
def mnist_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random 28x28 images and labels 0..9 for a 20-image train and 10-image test split."""
    rng = np.random.default_rng(0)
    return {
        "train": (rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.arange(20) % 10),
        "test": (rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.permutation(10)),
    }


@pytest.fixture
def write_mnist(
    tmp_path: Path, mnist_arrays: dict[str, tuple[np.ndarray, np.ndarray]]
) -> Callable[..., Path]:
    """Return ``write(folder, gz=False)`` writing the four IDX files into ``tmp_path/folder``."""

    def write(folder: str = "mnist", gz: bool = False) -> Path:
        out = tmp_path / folder
        out.mkdir(parents=True, exist_ok=True)
        for split, (images_stem, labels_stem) in MNIST_STEMS.items():
            images, labels = mnist_arrays[split]
            for stem, array in ((images_stem, images), (labels_stem, labels)):
                data = idx_bytes(array.astype(np.uint8))
                if gz:
                    (out / (stem + ".gz")).write_bytes(gzip.compress(data))
                else:
                    (out / stem).write_bytes(data)
        return out

    return write


@pytest.fixture(scope="session")
def cifar_arrays() -> dict[str, tuple[np.ndarray, list[int]]]:
    """Random CIFAR-style batches: five train batches of 4 images and a test batch of 6."""
    rng = np.random.default_rng(1)
    batches = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}
    return {
        name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
        for name, n in batches.items()
    }


def _cifar_members(
    arrays: dict[str, tuple[np.ndarray, list[int]]], protocol: int
) -> dict[str, bytes]:
    members = {
        name: pickle.dumps(
            {b"batch_label": name.encode(), b"labels": labels, b"data": data}, protocol=protocol
        )
        for name, (data, labels) in arrays.items()
    }
    members["batches.meta"] = pickle.dumps(
        {b"label_names": CIFAR_NAMES, b"num_vis": 3072}, protocol=protocol
    )
    return members


@pytest.fixture(params=[2, 4, 5], ids=lambda p: f"protocol{p}")
def cifar_root(request, tmp_path, cifar_arrays) -> Path:
    """A root holding ``cifar-10-batches-py/`` pickled with protocols 2, 4 and 5."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, raw in _cifar_members(cifar_arrays, request.param).items():
        (folder / name).write_bytes(raw)
    return tmp_path


@pytest.fixture
def cifar_tar(tmp_path, cifar_arrays) -> Path:
    """A root holding only ``cifar-10-python.tar.gz``, laid out like the official archive."""
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, raw in _cifar_members(cifar_arrays, 2).items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return tmp_path


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """Class folders ``cat/`` (2 RGB PNG, 1 gray JPEG) and ``dog/`` (gray PNG, nested GIF)."""
    root = tmp_path / "images"
    rng = np.random.default_rng(2)
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "puppies").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / "cat/a.png")
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / "cat/b.PNG")
    Image.fromarray(np.full((12, 12), 90, np.uint8)).save(root / "cat/c.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(root / "dog/d.png")
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(root / "dog/puppies/e.gif")
    (root / "cat" / "readme.txt").write_text("not an image")
    return root
