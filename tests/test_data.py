"""Dataset loaders, transforms and the one-vs-all split, on tiny files in the real formats."""

from __future__ import annotations

import os
import pickle
import shlex

import numpy as np
import pytest
from PIL import Image

from adgan.data import (
    DATASETS,
    ENV_VAR,
    ImageSet,
    convert_channels,
    iter_image_files,
    load_cifar10,
    load_dataset,
    load_digits,
    load_folder,
    load_mnist,
    one_vs_all,
    read_image,
    resize_images,
    resolve_data_root,
    to_float,
    to_uint8,
)
from adgan.errors import AdganError, ConfigError, DataError

# ---------------------------------------------------------------- MNIST


def _check_mnist(train: ImageSet, test: ImageSet, arrays) -> None:
    for part, split in ((train, "train"), (test, "test")):
        images, labels = arrays[split]
        assert part.images.dtype == np.uint8 and part.images.shape == (len(images), 1, 28, 28)
        assert part.labels.dtype == np.int64
        np.testing.assert_array_equal(part.images[:, 0], images)
        np.testing.assert_array_equal(part.labels, labels)
        assert part.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_round_trip(write_mnist, mnist_arrays, gz):
    _check_mnist(*load_mnist(write_mnist("mnist", gz=gz)), mnist_arrays)


@pytest.mark.parametrize(
    "folder, root",
    [("mnist", "."), ("MNIST/raw", "."), ("mnist", "mnist"), ("data/MNIST/raw", "data")],
)
def test_mnist_layouts_are_found(write_mnist, mnist_arrays, tmp_path, folder, root):
    write_mnist(folder, gz=True)
    _check_mnist(*load_mnist(tmp_path / root), mnist_arrays)


def test_mnist_truncated_file_names_it(write_mnist):
    root = write_mnist()
    path = root / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        load_mnist(root)


def test_mnist_wrong_magic(write_mnist):
    root = write_mnist()
    # A labels file where the images belong: magic 0x801 instead of 0x803.
    (root / "t10k-images-idx3-ubyte").write_bytes((root / "t10k-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*0x00000801.*0x00000803"):
        load_mnist(root)


def test_mnist_corrupt_gzip(write_mnist):
    root = write_mnist(gz=True)
    path = root / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*gzip"):
        load_mnist(root)


def test_mnist_count_mismatch(write_mnist):
    root = write_mnist()
    path = root / "t10k-labels-idx1-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:4] + (9).to_bytes(4, "big") + raw[8:17])  # 9 labels for 10 images
    with pytest.raises(DataError, match="10 images but .*t10k-labels-idx1-ubyte 9 labels"):
        load_mnist(root)


def test_mnist_missing_files(tmp_path, write_mnist):
    with pytest.raises(DataError, match="not found in any of.*MNIST/raw"):
        load_mnist(tmp_path)
    root = write_mnist()
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        load_mnist(root)


# ---------------------------------------------------------------- CIFAR-10


def _check_cifar(train: ImageSet, test: ImageSet, arrays) -> None:
    batches = [arrays[f"data_batch_{i}"] for i in range(1, 6)]
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == np.uint8
    np.testing.assert_array_equal(train.images, data.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(train.labels, labels)
    assert train.labels.dtype == np.int64
    # Red plane first: the first 1024 values of a row are the red channel.
    np.testing.assert_array_equal(
        test.images[:, 0].reshape(-1, 1024), arrays["test_batch"][0][:, :1024]
    )
    np.testing.assert_array_equal(test.labels, arrays["test_batch"][1])
    assert test.classes[0] == "airplane" and len(test.classes) == 10
    assert test.images.flags.writeable


def test_cifar_round_trip(cifar_root, cifar_arrays):
    _check_cifar(*load_cifar10(cifar_root), cifar_arrays)
    # The batch folder itself is accepted as root too.
    _check_cifar(*load_cifar10(cifar_root / "cifar-10-batches-py"), cifar_arrays)


def test_cifar_from_tar_without_extracting(cifar_tar, cifar_arrays):
    _check_cifar(*load_cifar10(cifar_tar), cifar_arrays)
    assert sorted(p.name for p in cifar_tar.iterdir()) == ["cifar-10-python.tar.gz"]
    _check_cifar(*load_cifar10(cifar_tar / "cifar-10-python.tar.gz"), cifar_arrays)


def test_cifar_corrupt_tar(cifar_tar):
    archive = cifar_tar / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: corrupt"):
        load_cifar10(cifar_tar)


def test_cifar_missing_batch(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load_cifar10(cifar_root)


def test_cifar_not_found(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        load_cifar10(tmp_path)


def test_cifar_corrupt_pickle(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match="test_batch.*pickle"):
        load_cifar10(cifar_root)


def test_cifar_wrong_shape(cifar_root):
    bad = {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}
    (cifar_root / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match=r"data_batch_2.*\(N, 3072\)"):
        load_cifar10(cifar_root)


class _Hostile:
    """Unpickling this runs a callable of the attacker's choice with the given arguments."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_cifar_refuses_hostile_pickle(cifar_root, tmp_path, attack):
    marker = tmp_path / "pwned"
    if attack == "os.system":
        payload = _Hostile(os.system, f"touch {shlex.quote(str(marker))}")
    else:
        payload = _Hostile(eval, f"open({str(marker)!r}, 'w').close()")
    batch = {b"data": payload, b"labels": [0]}
    (cifar_root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match="data_batch_1.*refused global"):
        load_cifar10(cifar_root)
    assert not marker.exists()


# ---------------------------------------------------------------- image folders


def test_folder_labelled_tree_mixed_channels(image_tree):
    s = load_folder(image_tree)
    assert s.names == ["cat/a.png", "cat/b.PNG", "cat/c.jpg", "dog/d.png", "dog/puppies/e.gif"]
    assert s.classes == ["cat", "dog"]
    np.testing.assert_array_equal(s.labels, [0, 0, 0, 1, 1])
    # One RGB image makes the whole set RGB; gray images become three equal planes.
    assert s.images.shape == (5, 3, 12, 12) and s.images.dtype == np.uint8
    np.testing.assert_array_equal(
        s.images[0], np.asarray(Image.open(image_tree / "cat/a.png")).transpose(2, 0, 1)
    )
    gray = s.images[3]
    assert (gray[0] == gray[1]).all() and (gray[0] == gray[2]).all()
    np.testing.assert_array_equal(gray[0], np.asarray(Image.open(image_tree / "dog/d.png")))
    assert s.skipped == []


def test_folder_gray_only_infers_one_channel(image_tree):
    s = load_folder(image_tree / "dog", labelled=False)  # a gray PNG and a gray GIF
    assert s.images.shape == (2, 1, 12, 12) and s.names == ["d.png", "puppies/e.gif"]
    np.testing.assert_array_equal(
        s.images[1, 0], np.asarray(Image.open(image_tree / "dog/puppies/e.gif").convert("L"))
    )


def test_folder_channels_one_matches_pil(image_tree):
    s = load_folder(image_tree, channels=1)
    assert s.images.shape == (5, 1, 12, 12)
    expected = np.asarray(Image.open(image_tree / "cat/a.png").convert("L"))
    np.testing.assert_array_equal(s.images[0, 0], expected)


def test_folder_resize_with_size(image_tree):
    Image.new("RGB", (30, 20), (200, 10, 10)).save(image_tree / "cat/wide.png")
    s = load_folder(image_tree, size=8)
    assert s.images.shape == (6, 3, 8, 8)
    wide = s.images[s.names.index("cat/wide.png")]
    assert np.abs(wide[:, 2:-2, 2:-2].astype(int) - [[[200]], [[10]], [[10]]]).max() <= 2


def test_folder_size_mismatch_names_file(image_tree):
    Image.new("L", (10, 12)).save(image_tree / "dog/z.png")
    with pytest.raises(DataError, match=r"dog/z\.png is 10x12 but .*cat/a\.png is 12x12"):
        load_folder(image_tree)


def test_folder_corrupt_image_raise_or_skip(image_tree):
    bad = image_tree / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"cat/broken\.png"):
        load_folder(image_tree)
    s = load_folder(image_tree, on_error="skip")
    assert len(s) == 5 and "cat/broken.png" not in s.names
    assert [p for p, _ in s.skipped] == [str(bad)]
    assert s.skipped[0][1]


def test_folder_loose_files_beside_classes(image_tree):
    Image.new("L", (12, 12)).save(image_tree / "loose.png")
    with pytest.raises(DataError, match=r"loose\.png.*labelled=False"):
        load_folder(image_tree)
    s = load_folder(image_tree, labelled=False)
    assert s.labels is None and s.classes is None and len(s) == 6
    assert s.names[-1] == "loose.png"


def test_folder_flat_is_unlabelled_and_gray(tmp_path):
    for i in range(3):
        Image.new("L", (5, 7), i * 40).save(tmp_path / f"{i}.png")
    s = load_folder(tmp_path)
    assert s.labels is None and s.images.shape == (3, 1, 7, 5)
    assert s.names == ["0.png", "1.png", "2.png"]
    with pytest.raises(DataError, match="no class sub-folders"):
        load_folder(tmp_path, labelled=True)


def test_folder_empty(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        load_folder(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")
    with pytest.raises(ConfigError):
        load_folder(tmp_path, on_error="ignore")


def test_iter_image_files_and_read_image(image_tree):
    files = iter_image_files(image_tree)
    assert [f.name for f in files] == ["a.png", "b.PNG", "c.jpg", "d.png", "e.gif"]
    assert read_image(files[2], channels=3, size=None).shape == (3, 12, 12)
    assert read_image(files[0], channels=1, size=4).shape == (1, 4, 4)
    with pytest.raises(DataError, match="readme.txt"):
        read_image(image_tree / "cat" / "readme.txt", channels=1, size=None)


# ---------------------------------------------------------------- transforms


def test_float_round_trip():
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    f = to_float(x)
    assert f.dtype == np.float32 and f.min() == -1.0 and f.max() == 1.0
    np.testing.assert_array_equal(to_uint8(f), x)
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, 3.0])), [0, 255])


def test_convert_channels_matches_pil():
    rgb = np.random.default_rng(3).integers(0, 256, (2, 3, 9, 9), dtype=np.uint8)
    gray = convert_channels(rgb, 1)
    for i in range(2):
        pil = Image.fromarray(rgb[i].transpose(1, 2, 0)).convert("L")
        np.testing.assert_array_equal(gray[i, 0], np.asarray(pil))
    back = convert_channels(gray, 3)
    assert back.shape == (2, 3, 9, 9) and (back[:, 0] == back[:, 2]).all()
    with pytest.raises(ConfigError):
        convert_channels(rgb, 2)


def test_resize_images_matches_pil():
    rgb = np.random.default_rng(4).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    out = resize_images(rgb, 8)
    assert out.shape == (2, 3, 8, 8) and out.dtype == np.uint8
    pil = Image.fromarray(rgb[1].transpose(1, 2, 0)).resize((8, 8), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(out[1], np.asarray(pil).transpose(2, 0, 1))


# ---------------------------------------------------------------- one-vs-all


def _labelled(n: int, n_classes: int = 10, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    images = rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8)
    return ImageSet(images, labels.astype(np.int64), None, [str(i) for i in range(n_classes)])


def test_one_vs_all_protocol():
    train, test = _labelled(100), _labelled(300, seed=1)
    task = one_vs_all(train, test, normal_class=3, n_test=120, seed=7)
    assert len(task.x_train) == 10 and (train.labels[train.labels == 3] == 3).all()
    np.testing.assert_array_equal(task.x_train, train.images[train.labels == 3])
    assert len(task.test_index) == 120 and len(np.unique(task.test_index)) == 120
    assert (np.diff(task.test_index) > 0).all()
    np.testing.assert_array_equal(task.x_test, test.images[task.test_index])
    np.testing.assert_array_equal(task.y_test, test.labels[task.test_index] != 3)
    assert set(task.y_test.tolist()) == {0, 1} and task.normal_class == 3
    # The draw is from the whole test set, so every class shows up.
    assert set(test.labels[task.test_index].tolist()) == set(range(10))


def test_one_vs_all_reproducible_and_seeded():
    train, test = _labelled(100), _labelled(300, seed=1)
    a = one_vs_all(train, test, 0, n_test=50, seed=1)
    b = one_vs_all(train, test, 0, n_test=50, seed=1)
    c = one_vs_all(train, test, 0, n_test=50, seed=2)
    np.testing.assert_array_equal(a.test_index, b.test_index)
    assert not np.array_equal(a.test_index, c.test_index)
    assert len(one_vs_all(train, test, 0, n_test=None).test_index) == 300
    assert len(one_vs_all(train, test, 0, n_test=10_000).test_index) == 300
    sub = one_vs_all(train, test, 0, n_test=50, seed=1, n_train=4)
    assert len(sub.x_train) == 4
    np.testing.assert_array_equal(sub.test_index, a.test_index)


def test_one_vs_all_errors():
    train, test = _labelled(100), _labelled(300, seed=1)
    with pytest.raises(ConfigError, match="normal class 12 .*9 \\(9\\)"):
        one_vs_all(train, test, 12)
    no_twos = train.subset(train.labels != 2)
    with pytest.raises(DataError, match="no images of the normal class 2"):
        one_vs_all(no_twos, test, 2)
    with pytest.raises(DataError, match="unlabelled"):
        one_vs_all(ImageSet(train.images, None, None, None), test, 0)
    only_ones = test.subset(test.labels == 1)
    with pytest.raises(DataError, match="no anomalous"):
        one_vs_all(train, only_ones, 1)
    with pytest.raises(DataError, match="no normal"):
        one_vs_all(train, only_ones, 0)


def test_subset_keeps_names_aligned():
    s = ImageSet(np.zeros((4, 1, 2, 2), np.uint8), np.arange(4), ["a", "b", "c", "d"], None)
    sub = s.subset(np.array([False, True, False, True]))
    assert sub.names == ["b", "d"] and sub.labels.tolist() == [1, 3] and len(sub) == 2
    assert s.subset(slice(None, None, -1)).names == ["d", "c", "b", "a"]


# ---------------------------------------------------------------- digits and roots


def test_digits_split():
    train, test = load_digits()
    assert len(train) + len(test) == 1797 and abs(len(test) - 1797 / 3) < 1
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (1, 8, 8)
    assert train.images.max() == 255 and train.images.min() == 0
    assert train.classes == [str(i) for i in range(10)]
    # Stratified: each class's share of the test set matches its share of the whole.
    counts = np.bincount(np.concatenate([train.labels, test.labels]))
    assert np.all(np.abs(np.bincount(test.labels) - counts / 3) <= 1)
    again, _ = load_digits()
    np.testing.assert_array_equal(again.images, train.images)


def test_resolve_data_root(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    assert resolve_data_root(str(other)) == other
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(DataError, match="data_root: not given, and ADGAN_DATA is not set"):
        resolve_data_root(None)
    with pytest.raises(DataError, match="nowhere"):
        resolve_data_root(str(tmp_path / "nowhere"))


def test_load_dataset(tmp_path, monkeypatch, write_mnist, mnist_arrays):
    with pytest.raises(ConfigError, match="digits, mnist, cifar10"):
        load_dataset("svhn")
    assert DATASETS == ("digits", "mnist", "cifar10")
    write_mnist("mnist", gz=True)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    _check_mnist(*load_dataset("mnist"), mnist_arrays)
    with pytest.raises(AdganError):
        load_dataset("cifar10")


# ---------------------------------------------------------------- real data (slow)


@pytest.fixture
def real_root():
    root = os.environ.get(ENV_VAR)
    if not root:
        pytest.skip(f"{ENV_VAR} not set: no real datasets to check")
    return root


@pytest.mark.slow
def test_real_mnist(real_root):
    train, test = load_dataset("mnist", real_root)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape[1:] == (1, 28, 28)
    assert int((train.labels == 0).sum()) == 5923


@pytest.mark.slow
def test_real_cifar10(real_root):
    train, test = load_dataset("cifar10", real_root)
    assert (len(train), len(test)) == (50000, 10000)
    assert train.images.shape[1:] == (3, 32, 32)
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes[0] == "airplane"
