"""Scoring cost of adgan-plus against adgan, per image, in one run.

Both detectors are fitted on the same GAN (trained once, briefly: the cost of scoring depends
on the networks' shapes and the search settings, not on how well the GAN is trained), with a
preset's parameters for each; then each scores the same test images, alternately, and the
best of ``--reps`` timings is kept. adgan-plus runs the same search (on the generator's moving
average) plus a rotation network's forward passes per image (4 rotations, or 36 rotated and
shifted copies where the preset sets ``translation``), so its cost should be adgan's and a
little more; where the preset sets its reconstruction weight to 0 it runs no search at all.

    python benchmarks/plus_cost.py                                   # digits, smoke preset
    python benchmarks/plus_cost.py --dataset mnist --preset cpu --images 50

Last line: ``ratio=R seconds_per_image_adgan=A seconds_per_image_plus=P``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from adgan.data import one_vs_all
from adgan.evaluate import load_for
from adgan.presets import load_preset
from adgan.registry import make_detector


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits", choices=["digits", "mnist", "cifar10"])
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--normal-class", type=int, default=1)
    ap.add_argument("--images", type=int, default=100, help="test images scored per timing")
    ap.add_argument("--iterations", type=int, default=20, help="GAN training (cost only)")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    preset = load_preset(args.preset).for_dataset(args.dataset)
    train, test = load_for(args.dataset, args.data_root)
    task = one_vs_all(train, test, args.normal_class, n_test=args.images, seed=0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"{args.dataset}, preset {args.preset}, {len(task.x_test)} images, "
          f"{torch.get_num_threads()} threads, CPU {cpu}, torch {torch.__version__}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="adgan-plus-cost-") as work:
        dets = {}
        for name in ("adgan", "adgan-plus"):
            params = preset.params_for(name)
            params.update(iterations=args.iterations, work_dir=work, random_state=0)
            dets[name] = make_detector(name, **params).fit(task.x_train)
        best = {name: float("inf") for name in dets}
        for _ in range(args.reps):
            for name, det in dets.items():
                t0 = time.perf_counter()
                det.anomaly_score(task.x_test)
                best[name] = min(best[name], time.perf_counter() - t0)
    n = len(task.x_test)
    for name, s in best.items():
        print(f"{name:>11}: {s:8.2f} s for {n} images, {s / n:.4f} s per image")
    a, p = best["adgan"] / n, best["adgan-plus"] / n
    print(f"ratio={p / a:.3f} seconds_per_image_adgan={a:.4f} seconds_per_image_plus={p:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
