"""Hostile and careless input: special files, oversized images and networks, poisoned
detector files, odd file names, nonsense settings. Each ends at once with a one-line error
naming the file or setting, or (where a run promises to go on) a skip listed with its
reason; nothing is left half-written."""

import csv
import gzip
import json
import math
import os
import shutil
import signal
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adgan import ADGAN, params
from adgan.cli import main
from adgan.data import load_cifar10, load_folder, load_mnist
from adgan.data.decode import decode_image, read_image_bytes
from adgan.errors import CheckpointError, ConfigError, DataError
from adgan.files import csv_text, csv_untext
from adgan.params import MAX_IMAGE_PIXELS, MAX_IMAGE_SIZE
from adgan.presets import load_preset
from adgan.rank import rank_collection
from adgan.registry import load_detector

TINY = dict(
    objective="wgan-gp",
    iterations=2,
    width=4,
    latent_dim=6,
    n_seeds=2,
    steps=2,
    batch_size=8,
    calibration=6,
    device="cpu",
)
SECONDS = 60  # a test that hangs (a FIFO opened, /dev/zero read) fails after this


@pytest.fixture(autouse=True)
def _deadline():
    def stop(signum, frame):
        raise TimeoutError(f"still running after {SECONDS} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _normal(rng):
    a = rng.integers(0, 40, size=(8, 8), dtype=np.uint8)
    a[1:7, 3:5] = 220
    return a


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny ADGAN for 8x8 gray images, saved."""
    rng = np.random.default_rng(0)
    det = ADGAN(**TINY).fit(np.stack([_normal(rng) for _ in range(30)])[:, None])
    return det.save(tmp_path_factory.mktemp("model") / "detector.pt")


def _folder(root: Path, n: int = 4, names=None) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for name in names or [f"n{i}.png" for i in range(n)]:
        Image.fromarray(_normal(rng)).save(root / name)
    return root


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _rows(path):
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return list(csv.DictReader(fh))


# -- special files -------------------------------------------------------------------------
def _plant_special_files(root: Path) -> None:
    os.mkfifo(root / "fifo.png")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "dangling.png").symlink_to(root / "nowhere.png")


def test_rank_skips_fifos_and_devices_without_opening_them(model, tmp_path):
    data = _folder(tmp_path / "data")
    _plant_special_files(data)
    res = rank_collection(load_detector(model), data, tmp_path / "out", progress=False)
    assert res.n_scored == 4
    skipped = {r["path"]: r["reason"] for r in _rows(tmp_path / "out" / "skipped.csv")}
    assert set(skipped) == {"fifo.png", "zero.png", "dangling.png"}
    assert "a FIFO" in skipped["fifo.png"] and "not opened" in skipped["fifo.png"]
    assert "a character device" in skipped["zero.png"]


def test_score_lists_a_fifo_without_opening_it(model, tmp_path):
    data = _folder(tmp_path / "data")
    os.mkfifo(data / "x.png")
    rc = main(
        ["score", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "s.csv")]
    )
    assert rc == 0
    assert len(_rows(tmp_path / "s.csv")) == 4
    skipped = {r["id"]: r["reason"] for r in _rows(tmp_path / "s.skipped.csv")}
    assert set(skipped) == {"x.png"} and "a FIFO" in skipped["x.png"]


def test_files_over_the_byte_and_pixel_limits_are_not_decoded(tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(big)
    with pytest.raises(DataError, match="big.png: .* bytes, over the 100 read from one image"):
        read_image_bytes(big, limit=100)
    side = math.isqrt(MAX_IMAGE_PIXELS) + 1  # a header stating more pixels than are decoded
    with pytest.raises(DataError, match=rf"bomb.png: {side}x{side} pixels, over the"):
        decode_image(_png_header_only(side), 1, None, "bomb.png")


def _png_header_only(side: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_gzip_bomb_among_the_mnist_files_is_not_inflated_whole(write_mnist, monkeypatch):
    root = write_mnist(gz=True)
    bomb = root / "t10k-labels-idx1-ubyte.gz"
    bomb.write_bytes(gzip.compress(bytes(50000)))  # the real files are smaller
    monkeypatch.setattr(params, "MAX_DATASET_BYTES", 20000)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: over the 20000 bytes"):
        load_mnist(root)


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tar"])
def test_an_oversized_cifar_batch_is_not_read(cifar_root, monkeypatch, packed):
    batch = cifar_root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(bytes(50000))  # the real batches are smaller
    if packed:
        with tarfile.open(cifar_root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(cifar_root / "cifar-10-batches-py", "cifar-10-batches-py")
        shutil.rmtree(cifar_root / "cifar-10-batches-py")
    monkeypatch.setattr(params, "MAX_DATASET_BYTES", 20000)
    with pytest.raises(DataError, match="test_batch: .*over the 20000 (bytes )?read from one file"):
        load_cifar10(cifar_root)


# -- oversized settings and architectures ---------------------------------------------------
def test_an_image_size_over_the_limit_is_refused_before_reading(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    with pytest.raises(ConfigError, match=f"image_size: .* from 1 to {MAX_IMAGE_SIZE}"):
        load_folder(data, size=MAX_IMAGE_SIZE + 1)
    rc = main(
        ["train", "--data", str(data), "--image-size", "100000", "--out", str(tmp_path / "r")]
    )
    assert rc != 0 and not (tmp_path / "r").exists()
    _one_line_error(capsys, "--image-size", "100000")


def _rewrite_arch(model: Path, path: Path, **arch) -> Path:
    blob = torch.load(model, weights_only=True)
    blob["state"]["arch"] = json.dumps({**json.loads(blob["state"]["arch"]), **arch})
    torch.save(blob, path)
    return path


@pytest.mark.parametrize(
    "arch,needle",
    [
        ({"width": 10**8}, "width 100000000"),
        ({"latent_dim": 10**9}, "latent_dim 1000000000"),
        ({"image_size": 100000}, "image_size"),
        ({"width": -3}, "width: expected a positive integer"),
    ],
)
def test_a_detector_file_asking_for_a_huge_network_is_refused(model, tmp_path, arch, needle):
    path = _rewrite_arch(model, tmp_path / "huge.pt", **arch)
    with pytest.raises(CheckpointError) as err:
        load_detector(path)
    assert str(path) in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize("param,value", [("memory_mb", -1.0), ("n_seeds", "many"), ("lr_z", None)])
def test_a_detector_file_with_nonsense_settings_is_refused(model, tmp_path, param, value):
    blob = torch.load(model, weights_only=True)
    blob["params"] = json.dumps({**json.loads(blob["params"]), param: value})
    torch.save(blob, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=f"odd.pt: detector file refused .{param}: expected"):
        load_detector(tmp_path / "odd.pt")


def test_a_poisoned_detector_is_refused_without_advice_to_trust_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "poisoned.pt"
    torch.save({"format": "adgan-detector", "detector": "adgan", "x": Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        load_detector(path)
    msg = str(err.value)
    assert str(path) in msg and "could run code" in msg and "\n" not in msg
    assert "weights_only" not in msg and "trusted" not in msg
    assert not marker.exists()


# -- file names ------------------------------------------------------------------------------
def test_score_writes_a_whole_csv_for_a_non_utf8_file_name(model, tmp_path):
    data = _folder(tmp_path / "data", n=3)
    odd = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    _folder(data, names=[odd])
    out = tmp_path / "s.csv"
    assert main(["score", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == 4 and odd in {r["id"] for r in rows}
    assert b"caf\xe9.png" in out.read_bytes()
    assert not list(tmp_path.glob("s.csv.*"))  # no temporary file left beside it


FORMULAS = ["=1+1.png", "+cmd.png", "-2.png", "@SUM(A1).png", "'quoted.png"]


def test_formula_like_names_are_written_as_text(model, tmp_path):
    data = _folder(tmp_path / "data", names=FORMULAS)
    out = tmp_path / "s.csv"
    assert main(["score", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    ids = {r["id"] for r in _rows(out)}
    assert ids == {"'" + f for f in FORMULAS}
    assert all(csv_untext(csv_text(f)) == f for f in [*FORMULAS, "plain.png", ""])
    # rank writes them the same way, and a rerun reads them back: nothing scored twice
    det = load_detector(model)
    rank_collection(det, data, tmp_path / "r", progress=False)
    first = (tmp_path / "r" / "scores.csv").read_bytes()
    assert {r["path"] for r in _rows(tmp_path / "r" / "scores.csv")} == ids
    res = rank_collection(det, data, tmp_path / "r", progress=False)
    assert res.n_scored == len(FORMULAS) and (tmp_path / "r" / "scores.csv").read_bytes() == first


# -- a resumed rank ---------------------------------------------------------------------------
@pytest.mark.parametrize("junk", ["not-a-number", "nan", "inf", ""])
def test_a_rank_resume_with_a_non_numeric_score_rescores_that_image(model, tmp_path, junk):
    data = _folder(tmp_path / "data")
    det = load_detector(model)
    out = tmp_path / "r"
    rank_collection(det, data, out, progress=False)
    good = _rows(out / "scores.csv")
    text = (out / "scores.csv").read_text()
    (out / "scores.csv").write_text(text.replace(good[0]["score"], junk, 1))
    res = rank_collection(det, data, out, progress=False)
    assert res.n_scored == 4
    again = {r["path"]: float(r["score"]) for r in _rows(out / "scores.csv")}
    assert set(again) == {r["path"] for r in good}
    for r in good:  # the rescored image alone, in a batch of one: float rounding
        assert again[r["path"]] == pytest.approx(float(r["score"]), rel=1e-5)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_a_damaged_record_in_a_ranking_folder_is_a_one_line_error(model, tmp_path, capsys, text):
    data = _folder(tmp_path / "data")
    out = tmp_path / "r"
    out.mkdir()
    (out / "meta.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    argv = ["rank", "--model", str(model), "--data", str(data), "--out", str(out), "--quiet"]
    assert main(argv) != 0
    _one_line_error(capsys, "meta.json: not a")


# -- images the model was not made for ---------------------------------------------------------
def test_float_images_outside_minus_one_to_one_are_refused(model):
    det = load_detector(model)
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8)).astype(np.float32)
    with pytest.raises(DataError, match=r"scaled to \[-1, 1\].*from 0 to 2\d\d"):
        det.anomaly_score(x)
    assert np.isfinite(det.anomaly_score(x / 127.5 - 1)).all()


def test_score_lists_images_of_another_shape_rather_than_converting(model, tmp_path):
    data = _folder(tmp_path / "data")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "big_rgb.png")
    out = tmp_path / "s.csv"
    assert main(["score", "--model", str(model), "--data", str(data), "--out", str(out)]) == 0
    assert "big_rgb.png" not in {r["id"] for r in _rows(out)}
    skipped = {r["id"]: r["reason"] for r in _rows(tmp_path / "s.skipped.csv")}
    assert skipped == {"big_rgb.png": "32x32 colour image, expected 8x8 gray ones"}


# -- nonsense settings --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line,needle",
    [
        ("iteratons = 5", "unknown parameter 'iteratons'"),
        ('iterations = "ten"', "iterations must be"),
        ("lr = -1e-4", "lr must be"),
        ("lr_z = nan", "lr_z must be"),
        ("lr_theta = inf", "lr_theta must be"),
        ("calibration = -5", "calibration must be"),
        ("width = 0", "width must be"),
    ],
)
def test_nonsense_preset_values_are_refused_before_any_work(tmp_path, capsys, line, needle):
    preset = tmp_path / "p.toml"
    preset.write_text(f"[params]\n{line}\n")
    with pytest.raises(ConfigError, match=needle):
        load_preset(str(preset))
    data = _folder(tmp_path / "data")
    rc = main(["train", "--data", str(data), "--preset", str(preset), "--out", str(tmp_path / "r")])
    assert rc != 0 and not (tmp_path / "r").exists()
    _one_line_error(capsys, str(preset), needle)


def test_a_misspelt_method_table_is_refused(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("[method.adgna]\niterations = 5\n")
    with pytest.raises(ConfigError, match="unknown method .method.adgna"):
        load_preset(str(preset))


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--iterations", "-5"], "iterations"),
        (["train", "--seed", "-1"], "--seed: expected an integer >= 0"),
        (["train", "--max-images", "0"], "--max-images"),
        (["train", "--image-size", "0"], "--image-size"),
        (["rank", "--fpr", "nan"], "fpr"),
        (["rank", "--fpr", "1.5"], "fpr"),
        (["rank", "--chunk", "0"], "--chunk"),
        (["benchmark", "--dataset", "digits", "--classes", "0-12"], "--classes: class 10"),
        (["benchmark", "--dataset", "digits", "--runs", "0"], "--runs"),
        (
            ["benchmark", "--dataset", "digits", "--methods", "mean-image", "--replace", "kde"],
            "--replace: kde not among --methods",
        ),
        (["evaluate", "--dataset", "digits", "--normal-class", "11"], "--normal-class: class 11"),
    ],
)
def test_nonsense_command_line_values_are_refused_up_front(model, tmp_path, capsys, argv, needle):
    data = _folder(tmp_path / "data")
    out = tmp_path / "out"
    extra = {
        "train": ["--data", str(data), "--out", str(out)],
        "rank": ["--model", str(model), "--data", str(data), "--out", str(out)],
        "benchmark": ["--out", str(out)],
        "evaluate": ["--out", str(out)],
    }[argv[0]]
    assert main([*argv, *extra, "--quiet"]) != 0
    _one_line_error(capsys, needle)
    assert not out.exists() or not any(out.iterdir())
