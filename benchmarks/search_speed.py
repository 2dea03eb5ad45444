"""Speed of ADGAN's latent search: the plain per-seed loop against the project's kernels.

In one run, on the same images and seeds: times the reference loop (a deep copy of the
generator and two torch.optim.Adam per seed) and the project's search, checks that their
scores agree, and prints images/s, their ratio, the achieved GFLOP/s (counted from the layer
shapes) as a fraction of the fp32 matmul throughput measured in the same run, the traffic of
the Adam state (24 bytes per parameter, pair and step: the least any exact fp32 search
moves) as a fraction of the streaming rate of a large fused Adam measured in the same run,
the bound these two rates put on the matmul fraction, and the peak memory of each (each
variant runs in its own process). At the paper's settings (64 seeds, 5 steps) and at 8
seeds. On a CPU with several threads, the fused kernel also runs with one worker (every
operation split across torch's threads), beside its default of one chunk per thread; and where
the compiled CPU kernel (adgan.search.native) could be built, the fused kernel also runs on torch's
operations alone ("torch ops").

    python benchmarks/search_speed.py --quick      # 2 CPU cores: a few minutes
    python benchmarks/search_speed.py --device cuda --images 64

The last line reads ``ratio=R fraction_of_matmul=F peak_rss_mb=M`` for the paper's settings.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import time

import numpy as np
import torch


def generator_flops(gen) -> float:
    """FLOPs of one forward pass for one latent vector (multiply-adds count 2)."""
    flops, side = 0.0, 1
    for i, conv in enumerate(gen.convs):
        k = conv.kernel_size[0]
        if i == 0:
            side = k
            flops += 2.0 * conv.in_channels * conv.out_channels * k * k
        else:
            flops += 2.0 * conv.in_channels * conv.out_channels * k * k * side * side
            side *= 2
    return flops


def search_flops(gen, seeds: int, steps: int) -> float:
    """Per image: each step is a forward and a backward (about twice the forward: input and
    weight gradients), then one last forward."""
    return seeds * (3 * steps + 1) * generator_flops(gen)


def matmul_gflops(device: str, n: int = 2048, reps: int = 10) -> float:
    """The machine's fp32 matmul rate: the best of ``reps`` products of n x n matrices (the
    best, not the mean, so that a noisy machine does not lower the bar)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


def adam_stream_gbs(device: str, n: int = 2**26, reps: int = 5) -> float:
    """Memory bandwidth as the search's update sees it: torch's fused Adam over fp32 state far
    larger than any cache (parameters, gradients and two moments: 1 GiB at the default n),
    counting the 24 bytes per element of reading and writing the parameter and both moments
    (not the gradient's read: the search keeps gradients in a small cached buffer)."""
    p, g, m, v = (torch.rand(n, device=device) for _ in range(4))
    step = torch.ones((), device=device)

    def once():
        torch._fused_adam_(
            [p], [g], [m], [v], [], [step], lr=1e-4, beta1=0.5, beta2=0.999,
            weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False,
        )  # fmt: skip

    once()
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        once()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 24.0 * n / best / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _worker(args, kernel, seeds, n_images, q, workers=None, native=True):
    from adgan.nets.dcgan import DCGANConfig, Generator
    from adgan.search import SearchConfig, latent_search

    torch.manual_seed(0)
    gen = Generator(
        DCGANConfig(
            image_size=args.size, channels=args.channels, latent_dim=args.latent, width=args.width
        )
    ).to(args.device)
    gen.train()
    with torch.no_grad():
        gen(torch.randn(256, args.latent, device=args.device))  # realistic running statistics
    gen.eval()
    # separate streams: the seeds and the first images must not depend on n_images
    z0 = torch.randn(seeds, args.latent, generator=torch.Generator().manual_seed(1))
    x = (
        torch.rand(
            n_images,
            args.channels,
            args.size,
            args.size,
            generator=torch.Generator().manual_seed(2),
        )
        * 2
        - 1
    )
    z0, x = z0.to(args.device), x.to(args.device)
    cfg = SearchConfig(
        n_seeds=seeds, steps=args.steps, kernel=kernel, workers=workers, native=native
    )
    # warm-up: the project's kernels keep their buffers between calls, so warm them on the
    # same chunks as the timed call; the loop allocates per pair anyway
    latent_search(gen, x if kernel != "loop" else x[:1], z0, cfg)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(args.device)
    t = time.perf_counter()
    res = latent_search(gen, x, z0, cfg)
    _sync(args.device)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else 0
    q.put(
        (
            res.seed_losses,
            n_images / dt,
            peak,
            gpu_peak,
            search_flops(gen, seeds, args.steps),
            sum(p.numel() for p in gen.parameters()),
        )
    )


def _has_native() -> bool:
    from adgan.search import native

    return native.load(torch.float32) is not None


def _stream_worker(device, q):
    q.put(adam_stream_gbs(device))


def stream_gbs(device: str) -> float:
    """adam_stream_gbs in a process of its own: its 1 GiB must not count in the peak memory
    of the timed variants (a spawned process inherits its parent's peak RSS)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_stream_worker, args=(device, q))
    p.start()
    out = q.get()
    p.join()
    return out


def run(args, kernel, seeds, n_images, workers=None, native=True):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(args, kernel, seeds, n_images, q, workers, native))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--latent", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--images", type=int, default=8, help="images for the project's kernel")
    ap.add_argument("--loop-images", type=int, default=2, help="images for the plain loop")
    ap.add_argument("--kernel", default="fused", help="the project's kernel to time")
    ap.add_argument(
        "--workers", type=int, default=None, help="CPU threads of the fused kernel (default: all)"
    )
    ap.add_argument("--quick", action="store_true", help="fewer images: minutes on 2 CPU cores")
    args = ap.parse_args()
    if args.quick:
        args.images, args.loop_images = 4, 1
    peak_flops = matmul_gflops(args.device)
    stream = stream_gbs(args.device)
    print(
        f"device {args.device} ({platform.machine()}, {torch.get_num_threads()} threads), "
        f"torch {torch.__version__}; generator {args.size}px x{args.channels}, width "
        f"{args.width}, latent {args.latent}; steps {args.steps}"
    )
    print(f"fp32 matmul (2048^3): {peak_flops:.1f} GFLOP/s")
    print(f"memory: fused Adam streaming 1 GiB of fp32 state: {stream:.1f} GB/s")
    print(
        f"{'seeds':>5} {'variant':>9} {'img/s':>8} {'GFLOP/s':>8} {'of matmul':>9} "
        f"{'state GB/s':>10} {'of memory':>9} {'peak RSS MB':>11} {'GPU MB':>7}"
    )
    last = None
    # the fused kernel's own threads (one chunk per thread) against splitting every
    # operation across torch's threads, where there is more than one CPU thread
    one_worker = (
        args.kernel in ("fused", "auto")
        and args.device == "cpu"
        and (args.workers or torch.get_num_threads()) > 1
    )
    # the compiled backward pass and update (adgan.search.native) against torch's operations alone,
    # where it could be built
    with_native = args.kernel in ("fused", "auto") and args.device == "cpu" and _has_native()
    if args.device == "cpu":
        print(f"compiled CPU kernel (adgan.search.native): {'yes' if _has_native() else 'no'}")
    for seeds in (8, 64):
        loop = run(args, "loop", seeds, args.loop_images)
        fast = run(args, args.kernel, seeds, args.images, args.workers)
        rows = [("loop", loop), (args.kernel, fast)]
        if one_worker:
            rows.insert(1, ("1 worker", run(args, args.kernel, seeds, args.images, 1)))
        if with_native:
            # the same kernel on torch's operations alone (no compiled backward pass)
            torch_ops = run(args, args.kernel, seeds, args.images, args.workers, native=False)
            rows.insert(1, ("torch ops", torch_ops))
        n = min(args.loop_images, args.images)
        ok = all(np.allclose(r[0][:n], loop[0][:n], rtol=1e-3) for _, r in rows)
        # the least memory traffic of any exact fp32 search: every step reads and writes each
        # pair's parameters and both Adam moments (24 bytes per parameter)
        state_gb = 24.0 * fast[5] * seeds * args.steps / 1e9  # per image
        for name, r in rows:
            gfl = r[1] * r[4] / 1e9
            gbs = r[1] * state_gb
            print(
                f"{seeds:>5} {name:>9} {r[1]:>8.3f} {gfl:>8.1f} {gfl / peak_flops:>9.2%} "
                f"{gbs:>10.1f} {gbs / stream:>9.2%} {r[2]:>11.0f} {r[3]:>7.0f}"
            )
        # both limits at once: the arithmetic at the matmul rate plus the state traffic at the
        # streaming rate, one after the other (no overlap), and fully overlapped
        t_flop, t_mem = fast[4] / 1e9 / peak_flops, state_gb / stream
        serial = fast[4] / 1e9 / (t_flop + t_mem) / peak_flops
        overlap = fast[4] / 1e9 / max(t_flop, t_mem) / peak_flops
        print(
            f"      seeds={seeds}: bound on the fraction of matmul from these two rates: "
            f"{serial:.2f} (arithmetic then traffic) to {overlap:.2f} (fully overlapped)"
        )
        ratio = fast[1] / loop[1]
        frac = fast[1] * fast[4] / 1e9 / peak_flops
        print(
            f"      seeds={seeds}: ratio {ratio:.2f}x, scores agree (rtol 1e-3): {ok}, "
            f"generator parameters {fast[5]:,}"
        )
        if not ok:
            raise SystemExit("the kernels disagree: the timing is void")
        last = (ratio, frac, fast[2] if not args.device.startswith("cuda") else fast[3])
    print(f"ratio={last[0]:.2f} fraction_of_matmul={last[1]:.3f} peak_rss_mb={last[2]:.0f}")


if __name__ == "__main__":
    main()
