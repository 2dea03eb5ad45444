"""The command line against hostile files and nonsense settings, each in a fresh process.

Plants special files (a FIFO named like an image, a link to /dev/zero), an image whose
header states more pixels than are decoded, a non-UTF-8 file name, names that a spreadsheet
would read as formulas, images of another shape than the model's, a poisoned detector file
and one whose architecture asks for a huge network; feeds nonsense presets and options.
Every run must end within ``--seconds``: where it refuses, with exit status other than 0
and one line on stderr naming the file or setting, never a traceback; where it goes on
(``rank`` skips unreadable images), with status 0 and the skip listed in ``skipped.csv``.

    python benchmarks/hostile_check.py            # prints one line per case; status 1 if any fails
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from adgan import ADGAN
from adgan.params import MAX_IMAGE_PIXELS

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


def normal_image(rng) -> np.ndarray:
    a = rng.integers(0, 40, size=(8, 8), dtype=np.uint8)
    a[1:7, 3:5] = 220
    return a


def folder(root: Path, names: list[str], seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(normal_image(rng)).save(root / name)
    return root


def png_header_only(side: int) -> bytes:
    """A PNG whose header states side x side pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


class Poison:
    """Pickled, runs a shell command when loaded by an unguarded ``torch.load``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(tmp: Path) -> dict[str, Path]:
    """Every file the cases read."""
    rng = np.random.default_rng(0)
    model = ADGAN(**TINY).fit(np.stack([normal_image(rng) for _ in range(30)])[:, None])
    p = {"model": model.save(tmp / "model" / "detector.pt"), "marker": tmp / "code-ran"}
    p["special"] = folder(tmp / "special", ["a.png", "b.png"])
    os.mkfifo(p["special"] / "fifo.png")
    (p["special"] / "zero.png").symlink_to("/dev/zero")
    (p["special"] / "bomb.png").write_bytes(png_header_only(int(MAX_IMAGE_PIXELS**0.5) + 1))
    p["fifo"] = folder(tmp / "fifo", ["a.png"])
    os.mkfifo(p["fifo"] / "x.png")
    p["names"] = folder(
        tmp / "names", ["=HYPERLINK(1).png", "+1.png", "-1.png", "@SUM(1).png", "plain.png"]
    )
    folder(p["names"], [os.fsdecode(b"caf\xe9.png")])  # Latin-1 bytes: not UTF-8
    p["rgb32"] = folder(tmp / "rgb32", ["a.png"])
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p["rgb32"] / "rgb32.png")
    p["poisoned"] = tmp / "poisoned.pt"
    torch.save({"format": "adgan-detector", "x": Poison(p["marker"])}, p["poisoned"])
    blob = torch.load(p["model"], weights_only=True)
    blob["state"]["arch"] = json.dumps({**json.loads(blob["state"]["arch"]), "width": 10**8})
    p["huge"] = tmp / "huge.pt"
    torch.save(blob, p["huge"])
    for name, line in {
        "misspelt": "[params]\niteratons = 5",
        "misspelt_method": "[method.adgna]\niterations = 5",
        "text_count": '[params]\niterations = "ten"',
        "negative_lr": "[params]\nlr = -1e-4",
        "nan_lr_z": "[params]\nlr_z = nan",
        "inf_lr_theta": "[params]\nlr_theta = inf",
        "negative_calibration": "[params]\ncalibration = -5",
    }.items():
        p[name] = tmp / f"{name}.toml"
        p[name].write_text(line + "\n")
    return p


def cases(p: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], str]]:
    """(what, argv, expected): expected is "ok" or a text the one-line error must hold."""
    m, out = str(p["model"]), str(tmp / "out")
    train = ["train", "--data", str(p["names"]), "--out", out]
    out_csv = str(tmp / "scores.csv")
    rows: list[tuple[str, list[str], str]] = [
        ("rank: FIFO, /dev/zero, pixel bomb", ["rank", "--model", m, "--data", str(p["special"]),
                                               "--out", str(tmp / "rank-special")], "ok"),
        ("score: FIFO named x.png", ["score", "--model", m, "--data", str(p["fifo"]),
                                     "--out", out_csv], "x.png: a FIFO"),
        ("score: non-UTF-8 and formula names", ["score", "--model", m, "--data",
                                                str(p["names"]), "--out", out_csv], "ok"),
        ("rank: non-UTF-8 and formula names", ["rank", "--model", m, "--data", str(p["names"]),
                                               "--out", str(tmp / "rank-names")], "ok"),
        ("score: 32x32 RGB for an 8x8 gray model", ["score", "--model", m, "--data",
                                                    str(p["rgb32"]), "--out", out_csv],
         "rgb32.png"),
        ("score: poisoned detector", ["score", "--model", str(p["poisoned"]), "--dataset",
                                      "digits", "--out", out_csv], "could run code"),
        ("score: detector asking for a huge network", ["score", "--model", str(p["huge"]),
                                                       "--dataset", "digits", "--out", out_csv],
         "width"),
        ("train --image-size 100000", [*train, "--image-size", "100000"], "--image-size"),
        ("train --iterations -5", [*train, "--iterations", "-5"], "iterations"),
        ("train --seed -1", [*train, "--seed", "-1"], "--seed"),
        ("rank --fpr nan", ["rank", "--model", m, "--data", str(p["names"]), "--out", out,
                            "--fpr", "nan"], "fpr"),
        ("rank --chunk 0", ["rank", "--model", m, "--data", str(p["names"]), "--out", out,
                            "--chunk", "0"], "--chunk"),
        ("benchmark --classes 0-12", ["benchmark", "--dataset", "digits", "--classes", "0-12",
                                      "--out", out], "--classes"),
        ("evaluate --normal-class 11", ["evaluate", "--dataset", "digits", "--normal-class",
                                        "11"], "--normal-class"),
    ]  # fmt: skip
    for name in ("misspelt", "misspelt_method", "text_count", "negative_lr", "nan_lr_z",
                 "inf_lr_theta", "negative_calibration"):  # fmt: skip
        rows.append((f"train --preset {name}", [*train, "--preset", str(p[name])], name))
    return rows


def run(argv: list[str], expected: str, seconds: float) -> tuple[bool, str, float]:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "adgan.cli", *argv, "--quiet"],
            capture_output=True,
            timeout=seconds,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, f"still running after {seconds:.0f} s", time.monotonic() - start
    took = time.monotonic() - start
    err = proc.stderr.decode("utf-8", "backslashreplace")
    if "Traceback" in err:
        return False, "traceback: " + err.strip().splitlines()[-1], took
    if expected == "ok":
        good = proc.returncode == 0
        return good, "ok" if good else f"status {proc.returncode}: {err.strip()}", took
    lines = err.strip().splitlines()
    good = proc.returncode != 0 and len(lines) == 1 and expected in lines[0]
    return good, (lines[0] if lines else f"status {proc.returncode}, nothing on stderr"), took


def check_outputs(p: dict[str, Path], tmp: Path) -> list[str]:
    """What the runs that went on must have written."""
    problems = []
    skipped = tmp / "rank-special" / "skipped.csv"
    if skipped.exists():
        with skipped.open(newline="") as fh:
            listed = {r["path"] for r in csv.DictReader(fh)}
        if listed != {"fifo.png", "zero.png", "bomb.png"}:
            problems.append(f"{skipped} lists {sorted(listed)}")
    for path in (tmp / "scores.csv", tmp / "rank-names" / "scores.csv"):
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
            names = [next(iter(r.values())) for r in csv.DictReader(fh)]
        raw = [n for n in names if n[:1] in "=+-@"]
        if raw or len(names) != 6:
            problems.append(f"{path}: {len(names)} rows, formula cells {raw}")
    if p["marker"].exists():
        problems.append("the poisoned detector ran its code")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="limit per run (default: 60)")
    args = ap.parse_args()
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["ADGAN_CACHE_DIR"] = str(tmp / "cache")
        p = plant(tmp)
        for what, argv, expected in cases(p, tmp):
            good, message, took = run(argv, expected, args.seconds)
            failed += not good
            print(f"{'PASS' if good else 'FAIL'} {took:5.1f}s  {what}: {message}", flush=True)
        for problem in check_outputs(p, tmp):
            failed += 1
            print(f"FAIL        {problem}")
    print(f"{failed} failed" if failed else "all ended as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
