"""The compiled backward-and-Adam pass of each layer, exact and "mixed", on one thread and on
every thread at once: is a layer bound by memory traffic or by arithmetic?

The search runs one chunk of (image, seed) pairs per thread, so on 2 cores two threads move
their pairs' Adam state at the same time and share the memory bus. Here each thread calls
``conv_backward_adam`` (exact: weights and both moments in float32, 24 bytes per parameter
and pair read and written) or ``conv_backward_adam_mixed`` (a bfloat16 change and moments,
12 bytes) on its own pairs (12 by default, as a worker holds them at the paper's settings);
a step after the first and before the last. Printed per layer: the median milliseconds of a
call, and the state traffic of all threads together in GB/s. A layer whose GB/s reaches the
machine's streaming rate (``search_speed.py`` prints it) with every thread running is bound
by traffic; one whose time stays as it was on one thread is bound by arithmetic, where fewer
bytes cannot help.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/layers_contended.py            # 32x32 RGB, width 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from native_layers import add_generator_args, generator_and_kernel, layers  # noqa: E402

from adgan.search import mixed, native
from adgan.search.fused import NATIVE_MAX_HW

BETAS, EPS, LR = (0.5, 0.999), 1e-8, 5e-5


def state(P, cin, N, HW, precision, seed):
    """One thread's pairs: (arguments of the kernel, bytes of state moved per call)."""
    g = torch.Generator().manual_seed(seed)
    dT = torch.randn(P, HW, N, generator=g) * 1e-2
    h = torch.randn(P, cin, HW, generator=g).relu()
    d_in = torch.empty(P, cin, HW) if HW > 1 else None
    work = torch.empty(4 * N)
    m = torch.rand(P, cin, N, generator=g) * 1e-3
    v = torch.rand(P, cin, N, generator=g) * 1e-6
    if precision == "exact":
        W = torch.randn(P, cin, N, generator=g) * 0.02
        return (W, m, v, dT, h, d_in, work), 24 * P * cin * N
    D = torch.randn(P, cin, N, generator=g).bfloat16()
    shared = torch.randn(cin, N, generator=g) * 0.02
    return (D, m.bfloat16(), v.bfloat16(), dT, h, d_in, work, shared), 12 * P * cin * N


def call(lib, precision, args) -> None:
    if precision == "exact":
        native.conv_backward_adam(lib, *args, None, LR, BETAS, EPS, 3)
    else:
        native.conv_backward_adam_mixed(lib, *args, LR, BETAS, EPS, 3, LR, False, False)


def timed(lib, precision, per_thread, reps) -> float:
    """Median seconds of a call, every thread calling on its own pairs at once."""
    times: list[float] = []
    start = threading.Barrier(len(per_thread))

    def run(args):
        torch.set_flush_denormal(True)
        call(lib, precision, args)  # warm
        start.wait()
        for _ in range(reps):
            t = time.perf_counter()
            call(lib, precision, args)
            times.append(time.perf_counter() - t)

    threads = [threading.Thread(target=run, args=(a,)) for a in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_generator_args(ap)
    ap.add_argument("--pairs", type=int, default=12, help="pairs per thread and call")
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="default: torch's threads")
    args = ap.parse_args()
    many = args.threads or torch.get_num_threads()
    torch.set_num_threads(1)  # the kernel is single-threaded; the threads are ours
    lib, gen = generator_and_kernel(args)
    mixed_convs = mixed.mixed_layers(gen, lib)
    print(f"torch {torch.__version__}; generator {args.size}px x{args.channels}, width "
          f"{args.width}, latent {args.latent}; {args.pairs} pairs per thread and call; "
          f"median of {args.reps} calls; ms per call and GB/s of Adam state, all threads "
          "together")  # fmt: skip
    print(f"{'layer':>22} {'precision':>9} {'1 thread ms':>11} {'GB/s':>6} "
          f"{f'{many} threads ms':>12} {'GB/s':>6}")  # fmt: skip
    for _, name, cin, _, _, N, HW, j in layers(gen):
        if HW <= NATIVE_MAX_HW and N % native.vector_width(lib) == 0:  # the compiled layers
            for precision in ("exact", "mixed") if j in mixed_convs else ("exact",):
                made = [state(args.pairs, cin, N, HW, precision, t) for t in range(many)]
                per_thread, nbytes = [a for a, _ in made], made[0][1]
                one = timed(lib, precision, per_thread[:1], args.reps)
                all_ = timed(lib, precision, per_thread, args.reps)
                print(f"{name:>22} {precision:>9} {one * 1e3:>11.2f} {nbytes / one / 1e9:>6.1f} "
                      f"{all_ * 1e3:>12.2f} {many * nbytes / all_ / 1e9:>6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
