"""Peak memory of scoring N images with ADGAN on CPU, against N.

Each N runs in a fresh process: a detector of the MNIST ``cpu`` preset's size (28x28 gray,
width 32, latent 256; trained for a few iterations only: memory does not depend on training)
scores N random images through ``anomaly_score``, and the process's peak resident memory is
printed, beside the size of the images themselves (the uint8 array and the float32 copy the
detector scores, 5 bytes per pixel). The search works through (image, seed) pairs in chunks
of a fixed size, so the peak should grow with N by no more than the images. Fewer seeds
than the paper's 64 shorten the run without changing the chunk (``--seeds 64`` to check).

    python benchmarks/score_memory.py --sizes 1000,5000 --seeds 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np
from adgan import load_detector
model, n = sys.argv[1], int(sys.argv[2])
det = load_detector(model)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)
t = time.perf_counter()
s = det.anomaly_score(x)
dt = time.perf_counter() - t
assert s.shape == (n,) and np.isfinite(s).all()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "seconds": dt, "peak_mb": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    import numpy as np

    from adgan import ADGAN

    with tempfile.TemporaryDirectory() as tmp:
        x = np.random.default_rng(1).integers(0, 256, size=(128, 1, 28, 28), dtype=np.uint8)
        det = ADGAN(
            objective="wgan-gp", iterations=3, width=32, latent_dim=256, n_seeds=args.seeds,
            steps=5, calibration=8, device="cpu",
        ).fit(x)  # fmt: skip
        model = det.save(Path(tmp) / "model.pt")
        print(f"ADGAN 28x28 x1, width 32, latent 256, {args.seeds} seeds, 5 steps; CPU")
        # the images themselves: the caller's uint8 array and the float32 copy scored
        print(f"{'images':>7} {'wall s':>8} {'images/s':>9} {'peak RSS MB':>12} {'images MB':>10}")
        for n in (int(s) for s in args.sizes.split(",")):
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(model), str(n)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            wall = time.perf_counter() - t
            own = n * 28 * 28 * (1 + 4) / 2**20
            print(
                f"{n:>7} {wall:>8.1f} {n / r['seconds']:>9.2f} {r['peak_mb']:>12.0f} {own:>10.1f}"
            )


if __name__ == "__main__":
    main()
