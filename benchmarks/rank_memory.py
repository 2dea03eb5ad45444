"""Peak memory of `adgan rank` against the size of the collection.

Writes N synthetic 28x28 gray PNGs, ranks them with a small ADGAN (trained here in seconds:
memory while ranking depends on the chunk size and the model, not on N) in a fresh process
for each N, and prints the peak resident memory of each run. Streaming holds one chunk of
images at a time, so the peak should not grow with N.

    python benchmarks/rank_memory.py --sizes 2000,20000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = rng.integers(0, 60, size=(28, 28), dtype=np.uint8)
        a[6:22, 12:16] = 220 if i % 50 else 60  # one in 50 lacks the bar
        Image.fromarray(a).save(root / f"{i:06d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--chunk", type=int, default=256)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "train", 200, seed=1)
        from adgan import ADGAN
        from adgan.data import load_folder

        x = load_folder(tmp / "train").images
        det = ADGAN(
            objective="wgan-gp",
            iterations=20,
            width=8,
            latent_dim=16,
            n_seeds=4,
            steps=2,
            calibration=20,
            device="cpu",
        ).fit(x)
        model = det.save(tmp / "model.pt")
        print(f"{'images':>8} {'wall s':>8} {'peak RSS MB':>12}")
        for n in sizes:
            make_images(tmp / f"c{n}", n)
            t = time.perf_counter()
            argv = [
                "rank",
                "--model",
                str(model),
                "--data",
                str(tmp / f"c{n}"),
                "--out",
                str(tmp / f"r{n}"),
                "--chunk",
                str(args.chunk),
                "--quiet",
            ]
            code = (
                "import resource, sys; from adgan.cli import main; assert main(sys.argv[1:]) == 0; "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
            )
            out = subprocess.run(
                [sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True
            ).stdout
            peak_kb = int(out.strip().splitlines()[-1])  # this child's own peak
            print(f"{n:>8} {time.perf_counter() - t:>8.1f} {peak_kb / 1024:>12.0f}", flush=True)


if __name__ == "__main__":
    main()
