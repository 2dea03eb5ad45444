"""Time to score Table 1's ADGAN column: every class's test draw through ``anomaly_score``.

The paper's MNIST settings (28x28 gray, DCGAN width 64, latent 256, 64 seeds, 5 steps, 5000
test items per class, ten classes). The scoring time does not depend on how well the GAN is
trained, so each class gets a GAN trained for a few iterations only (seeded per class) and
random images stand in for the test items; scoring goes through the whole product path
(validation, chunking, the search kernel, the mean over seeds). Prints seconds per class,
the total, and what the search achieved: GFLOP/s as a fraction of the fp32 matmul rate, and
the Adam-state traffic (24 bytes per parameter, pair and step, the least any exact fp32
search moves) as a fraction of the streaming rate of a large fused Adam, both measured in
the same run on the same device (see search_speed.py).

    python benchmarks/table_score_time.py --device cuda            # the full column on a GPU
    python benchmarks/table_score_time.py --classes 1 --images 8   # a CPU smoke run

The last line reads ``total_s=T images=N fraction_of_matmul=F fraction_of_stream=M``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_speed import _sync, generator_flops, matmul_gflops, search_flops, stream_gbs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--images", type=int, default=5000, help="test items per class")
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args()

    from adgan import ADGAN

    peak = matmul_gflops(args.device)
    stream = stream_gbs(args.device)
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(
        f"device {args.device} ({name}), torch {torch.__version__}; MNIST size 28x28 x1, "
        f"width {args.width}, latent 256, {args.seeds} seeds, {args.steps} steps; "
        f"{args.classes} classes x {args.images} images"
    )
    print(f"fp32 matmul: {peak:.1f} GFLOP/s; fused Adam streaming: {stream:.1f} GB/s")
    print(f"{'class':>5} {'images':>7} {'score s':>8} {'img/s':>8}")
    total_t, total_n, flops, state = 0.0, 0, 0.0, 0.0
    for c in range(args.classes):
        rng = np.random.default_rng(c)
        x_train = rng.integers(0, 256, size=(64, 1, 28, 28), dtype=np.uint8)
        det = ADGAN(
            objective="wgan", iterations=2, width=args.width, latent_dim=256,
            n_seeds=args.seeds, steps=args.steps, calibration=8, device=args.device,
            random_state=c,
        ).fit(x_train)  # fmt: skip
        x = rng.integers(0, 256, size=(args.images, 1, 28, 28), dtype=np.uint8)
        # warm-up on other images (scores of the same images would come from the cache)
        det.anomaly_score(rng.integers(0, 256, size=(min(len(x), 64), 1, 28, 28), dtype=np.uint8))
        _sync(args.device)
        t = time.perf_counter()
        s = det.anomaly_score(x)
        _sync(args.device)
        dt = time.perf_counter() - t
        if s.shape != (len(x),) or not np.isfinite(s).all():
            raise SystemExit(f"class {c}: the scores are not {len(x)} finite numbers")
        gen = det.generator_
        n_par = sum(p.numel() for p in gen.parameters())
        flops += len(x) * search_flops(gen, args.seeds, args.steps)
        state += len(x) * 24.0 * n_par * args.seeds * args.steps
        total_t += dt
        total_n += len(x)
        print(f"{c:>5} {len(x):>7} {dt:>8.1f} {len(x) / dt:>8.2f}", flush=True)
    frac = flops / total_t / 1e9 / peak
    mem = state / total_t / 1e9 / stream
    print(
        f"total {total_t:.1f} s for {total_n} images; {flops / total_t / 1e9:.1f} GFLOP/s "
        f"({frac:.1%} of matmul), Adam state {state / total_t / 1e9:.1f} GB/s ({mem:.1%} of "
        f"streaming); generator forward {generator_flops(gen) / 1e6:.1f} MFLOP"
    )
    print(
        f"total_s={total_t:.1f} images={total_n} fraction_of_matmul={frac:.3f} "
        f"fraction_of_stream={mem:.3f}"
    )


if __name__ == "__main__":
    main()
