"""Where the fused search's time goes: torch.profiler by operator and by product shape.

Profiles ``latent_search`` (the default fused kernel, 64 seeds, 5 steps) on the 32x32 RGB
DCGAN generator of ``search_speed.py`` (width 64, latent 256) for a few images, prints the
operators by self time and each batched product's shape with its GFLOP/s, then times the
shape that costs most beside one large product of the same weights: a per-pair product with
16 rows cannot reach the large one's rate in a packing matrix library.

On CPU the kernel runs one chunk per thread, each on one core, and torch.profiler records
only the thread that starts it; so this profiles one such worker: one thread
(``torch.set_num_threads(1)``, ``workers=1``; ``--threads`` to change). Every figure is then
one core's.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/search_profile.py      # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from adgan.nets.dcgan import DCGANConfig, Generator
from adgan.search import SearchConfig, latent_search


def best_seconds(f, reps: int = 20) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2, help="images profiled (default 2)")
    ap.add_argument("--rows", type=int, default=12, help="operators and shapes listed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a worker)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = Generator(DCGANConfig(image_size=32, channels=3, latent_dim=256, width=64))
    gen.train()
    with torch.no_grad():
        gen(torch.randn(256, 256))  # BatchNorm running statistics
    gen.eval()
    z0 = torch.randn(64, 256)
    x = torch.rand(args.images, 3, 32, 32) * 2 - 1
    cfg = SearchConfig(n_seeds=64, steps=5, workers=1)  # profiled in this thread
    latent_search(gen, x, z0, cfg)  # warm-up: the kernel's buffers
    t = time.perf_counter()
    latent_search(gen, x, z0, cfg)
    print(f"{torch.__version__}, {torch.get_num_threads()} threads: "
          f"{(time.perf_counter() - t) / args.images:.3f} s per image unprofiled")  # fmt: skip
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        latent_search(gen, x, z0, cfg)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    print(f"\noperators by self time (total {total / 1e6:.2f} s):")
    for e in ops[: args.rows]:
        print(f"  {e.key:24s} {100 * e.self_cpu_time_total / total:5.1f}%  {e.count:6d} calls")
    print("\nbatched products by shape (A @ B -> out):")
    prods = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "aten::bmm"]
    prods.sort(key=lambda e: -e.self_cpu_time_total)
    for e in prods[: args.rows]:
        a, b = e.input_shapes[0], e.input_shapes[1]
        flop = 2 * a[0] * a[1] * a[2] * b[2] * e.count
        secs = e.self_cpu_time_total * 1e-6
        print(f"  {str(a):16s} @ {str(b):18s} {100 * e.self_cpu_time_total / total:5.1f}%  "
              f"{flop / secs / 1e9:6.1f} GFLOP/s")  # fmt: skip
    # the 4x4 -> 8x8 layer's forward product: 16 rows per pair against one product of the
    # same weight shape with 400 rows
    P, rows, cin, cols = 25, 16, 256, 2048
    h, W = torch.randn(P, rows, cin), torch.randn(P, cin, cols)
    out = torch.empty(P, rows, cols)
    small = 2 * P * rows * cin * cols / best_seconds(lambda: torch.bmm(h, W, out=out))
    hb, Wb, ob = torch.randn(400, cin), torch.randn(cin, cols), torch.empty(400, cols)
    large = 2 * 400 * cin * cols / best_seconds(lambda: torch.mm(hb, Wb, out=ob))
    print(f"\n{P} products ({rows}x{cin}) @ ({cin}x{cols}): {small / 1e9:.1f} GFLOP/s; "
          f"one (400x{cin}) @ ({cin}x{cols}): {large / 1e9:.1f} GFLOP/s; "
          f"ratio {large / small:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
