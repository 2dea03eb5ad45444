"""Speed-up of `adgan rank` on 2 processes (torchrun, gloo) over 1, on this machine.

Writes N digits (8x8, scikit-learn's embedded set) as PNG files, trains a detector with the
smoke preset's search settings (a short training: the cost measured is the scoring), then
times ``python -m adgan rank`` and ``torchrun --standalone --nproc-per-node 2 -m adgan rank``
on the same folder (wall clock of the whole command, start-up included), each process with
cores / processes threads, and checks that both rankings agree.

    python benchmarks/rank_scaling.py [--images 600] [--repeats 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(cmd: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"rank_scaling: {' '.join(cmd[:6])} ... failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def scores(path: Path) -> dict[str, float]:
    with path.open(newline="") as fh:
        return {r["path"]: float(r["score"]) for r in csv.DictReader(fh)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=600, help="images to rank (default: 600)")
    ap.add_argument("--repeats", type=int, default=1, help="timings per setting (best kept)")
    ap.add_argument("--iterations", type=int, default=20, help="training length (default: 20)")
    args = ap.parse_args()
    from sklearn.datasets import load_digits

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="rank-scaling-") as tmp:
        root = Path(tmp)
        d = load_digits()
        imgs = (d.images * (255 / 16)).astype(np.uint8)
        for name, idx in (
            ("train", np.flatnonzero(d.target == 0)),
            ("coll", np.arange(args.images) % len(imgs)),
        ):
            (root / name).mkdir()
            for j, i in enumerate(idx):
                Image.fromarray(imgs[i]).save(root / name / f"{j:05d}.png")
        adgan = [sys.executable, "-m", "adgan"]
        train = ["train", "--data", str(root / "train"), "--image-size", "8", "--channels", "1"]
        train += ["--preset", "smoke", "--iterations", str(args.iterations), "--quiet"]
        run([*adgan, *train, "--out", str(root / "model"), "--device", "cpu"], cores)
        rank = ["rank", "--model", str(root / "model"), "--data", str(root / "coll")]
        rank += ["--quiet", "--device", "cpu"]
        times = {}
        for n in (1, 2):
            best = float("inf")
            for k in range(args.repeats):
                out = root / f"out{n}-{k}"
                if n == 1:
                    cmd = [*adgan, *rank, "--out", str(out)]
                else:
                    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
                    cmd += [f"--nproc-per-node={n}", "-m", "adgan", *rank, "--out", str(out)]
                best = min(best, run(cmd, max(1, cores // n)))
            times[n] = best
        a, b = scores(root / "out1-0" / "scores.csv"), scores(root / "out2-0" / "scores.csv")
        assert a.keys() == b.keys()
        diff = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in a)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {cpu_model()}, {cores} cores; load average at the end {load:.2f}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"command: python benchmarks/rank_scaling.py --images {args.images} "
        f"--repeats {args.repeats} --iterations {args.iterations}"
    )
    print(f"rank of {args.images} digits (smoke preset search), wall clock with start-up:")
    for n, t in times.items():
        print(f"  {n} process(es), {max(1, cores // n)} thread(s) each: {t:.1f} s")
    print(f"speed-up of 2 processes over 1: {times[1] / times[2]:.2f}x")
    print(f"largest relative difference between the two rankings' scores: {diff:.1e}")


if __name__ == "__main__":
    main()
