"""Where the fused search's time goes: the compiled kernels, then torch's operators and
products (torch.profiler) by shape.

Profiles ``latent_search`` (the default fused kernel, 64 seeds, 5 steps) on the 32x32 RGB
DCGAN generator of ``search_speed.py`` (width 64, latent 256) for a few images. Prints the
share of the compiled kernels (adgan.search.native, where they could be built) in one timed call,
with their GFLOP/s and the rate at which the backward kernel moves each pair's weights and
moments; then torch's operators by self time and each batched product's shape with its
GFLOP/s (in a second, profiled call); then times the 4x4 -> 8x8 layer's per-pair product
(16 rows) beside one large product of the same weights, which a packing matrix library
cannot match with 16 rows, and the same products compiled.

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
from adgan.search import SearchConfig, latent_search, native


class NativeTimer:
    """Wall time, calls, FLOPs and bytes of the compiled kernels (adgan.search.native), which
    torch.profiler does not see: wraps the module's functions while active."""

    NAMES = ("conv_backward_adam", "forward", "fold", "patches")

    def __init__(self):
        self.stats = {n: [0.0, 0, 0.0, 0.0] for n in self.NAMES}  # seconds, calls, flop, bytes

    def __enter__(self):
        self.real = {n: getattr(native, n) for n in self.NAMES}
        for n in self.NAMES:
            setattr(native, n, self._wrap(n, self.real[n]))
        return self

    def __exit__(self, *exc):
        for n, f in self.real.items():
            setattr(native, n, f)

    def _wrap(self, name, f):
        def timed(lib, *args, **kw):
            t = time.perf_counter()
            f(lib, *args, **kw)
            st = self.stats[name]
            st[0] += time.perf_counter() - t
            st[1] += 1
            if name == "conv_backward_adam":  # two products; W, m, v read and written
                W, dT = args[0], args[3]
                P, cin, N = W.shape
                st[2] += 4.0 * P * cin * N * dT.shape[1]
                st[3] += 24.0 * P * cin * N
            elif name == "forward":
                h, W = args[0], args[1]
                st[2] += 2.0 * h.shape[0] * h.shape[1] * h.shape[2] * W.shape[2]
                st[3] += 4.0 * W.numel()

        return timed


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
    with NativeTimer() as nat:
        t = time.perf_counter()
        latent_search(gen, x, z0, cfg)
        wall = time.perf_counter() - t
    print(f"\ncompiled kernels (search.native; not seen by torch.profiler), {wall:.2f} s timed:")
    for name, (secs, calls, flop, byt) in nat.stats.items():
        if calls:
            extra = f"  {flop / secs / 1e9:6.1f} GFLOP/s" if flop else ""
            what = "weights and moments" if name == "conv_backward_adam" else "weights read"
            extra += f"  {byt / secs / 1e9:5.1f} GB/s of {what}" if byt else ""
            print(f"  {name:20s} {100 * secs / wall:5.1f}%  {calls:6d} calls{extra}")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        latent_search(gen, x, z0, cfg)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    print(f"\ntorch's operators by self time (total {total / 1e6:.2f} s):")
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
    lib = native.load(torch.float32)
    if lib is not None:  # the same per-pair products, compiled
        hT, outT = h.transpose(1, 2).contiguous(), torch.empty(P, rows, cols)
        comp = 2 * P * rows * cin * cols / best_seconds(lambda: native.forward(lib, hT, W, outT))
        print(f"the same {P} products compiled (search.native.forward): {comp / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
