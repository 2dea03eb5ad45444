"""Speed of ADGAN's latent search: the plain per-seed loop against the project's kernels,
each as a fraction of its roofline.

In one run, on the same images and seeds: times the reference loop (a deep copy of the
generator and two torch.optim.Adam per seed) and the project's search (the fused kernel in
its two precisions, "exact" and "mixed"; on a CPU with several threads also with one
worker, and on torch's operations alone where the compiled kernel could be built), checks
that their scores agree, and prints per variant images/s and the fraction of its roofline:
images/s over the lesser of

* the compute bound: the fp32 matmul rate measured in the same run over the FLOPs per image
  (counted from the layer shapes: a step is a forward and a backward of about twice the
  forward, then one last forward), and
* the traffic bound: the streaming rate of a large fused Adam measured in the same run over
  the bytes of per-pair state that variant must move per image (``state_bytes``: each
  pair's weights and Adam moments, read and written at every step, and the weights read by
  the forward pass; not the activations, the small gradients or the shared weights, which
  stay in the cache).

Each variant runs in its own process (its own peak memory); the loop, "exact" and "mixed"
run ``--repeats`` times alternately and each keeps its best, so that a machine whose load
changes during the run shifts them alike, and the ratio's two sides are measured the same
way (until 2026-12-02 the loop ran once against the best of two searches).

    python benchmarks/search_speed.py --quick      # 2 CPU cores: a few minutes (64 seeds)
    python benchmarks/search_speed.py --device cuda --images 64

The last line reads ``ratio=R fraction_of_roofline=F traffic_speedup=T peak_rss_mb=M`` at the
paper's settings (64 seeds): R the library's default kernel against the loop, F its fraction
of the roofline, T "mixed" over "exact" in images/s, M the default's peak RSS.
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


def state_bytes(gen, steps: int, precision: str) -> float:
    """Bytes of per-pair state a search moves per (image, seed) pair, over all its steps and
    the last forward pass. "exact": every parameter's weight, m and v in float32: the first
    step writes them (12 bytes; nothing to read), each later step reads the weights for its
    forward pass (4) and reads and writes all three (24), and the last forward reads the
    weights (4); on the last step the convolutions the compiled kernel runs
    (``mixed_layers``) write no moments (16 instead of 24). "mixed": for those convolutions
    the change D, m and v at 2 bytes each: the first step writes 6, later ones read D for
    the forward (2) and read and write the three (12), the last step writes no moments (8
    instead of 12), the last forward reads D (2); its other parameters as "exact". Without
    the compiled kernel (the loop, or ``native=False``: pass "torch") every step writes
    all three."""
    from adgan.search import mixed, native
    from adgan.search.batched import generator_parameters

    params = generator_parameters(gen)
    compiled = set()  # the compiled kernel's convolutions
    if precision != "torch":
        compiled = mixed.mixed_layers(gen, native.load(torch.float32))
    small = compiled if precision == "mixed" else set()
    total = 0.0
    for j, p in enumerate(params):
        b = 2 if j in small else 4
        moved = 0
        for t in range(1, steps + 1):
            last = t == steps and j in compiled  # writes the weights alone
            write = b if last else 3 * b
            # step 1 reads nothing (shared weights, zero moments); later ones read the
            # weights for the forward pass, then the three
            moved += write if t == 1 else b + 3 * b + write
        moved += b if steps else 0  # the last forward reads the weights (step 0: shared)
        total += moved * p.numel()
    return total


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else platform's guess)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def _worker(args, kernel, seeds, n_images, q, workers=None, native=True, precision="exact"):
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
        n_seeds=seeds, steps=args.steps, kernel=kernel, workers=workers, native=native,
        precision=precision,
    )  # fmt: skip
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
    compiled = native and kernel in ("fused", "auto") and args.device == "cpu"  # the C kernel
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else 0
    q.put(
        (
            res.seed_losses,
            n_images / dt,
            peak,
            gpu_peak,
            search_flops(gen, seeds, args.steps),
            sum(p.numel() for p in gen.parameters()),
            seeds * state_bytes(gen, args.steps, precision if compiled else "torch"),
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


def run(args, kernel, seeds, n_images, workers=None, native=True, precision="exact"):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(
        target=_worker, args=(args, kernel, seeds, n_images, q, workers, native, precision)
    )
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    from adgan.search import SearchConfig

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
    ap.add_argument(
        "--repeats", type=int, default=2, help="alternate runs of the loop, exact and mixed"
    )
    ap.add_argument(
        "--quick", action="store_true", help="fewer images, 64 seeds only: minutes on 2 CPU cores"
    )
    args = ap.parse_args()
    if args.quick:
        args.images, args.loop_images = 4, 1
    peak_flops = matmul_gflops(args.device)
    stream = stream_gbs(args.device)
    default = SearchConfig().precision
    print(
        f"device {args.device}: {cpu_model()} ({platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}; generator {args.size}px "
        f"x{args.channels}, width {args.width}, latent {args.latent}; steps {args.steps}; "
        f"default precision {default!r}"
    )
    print(f"fp32 matmul (2048^3): {peak_flops:.1f} GFLOP/s")
    print(f"memory: fused Adam streaming 1 GiB of fp32 state: {stream:.1f} GB/s")
    cpu = args.device == "cpu"
    fused = args.kernel in ("fused", "auto")
    # the fused kernel's own threads (one chunk per thread) against splitting every
    # operation across torch's threads, where there is more than one CPU thread
    one_worker = fused and cpu and (args.workers or torch.get_num_threads()) > 1
    # the compiled backward pass and update (adgan.search.native) against torch's operations
    # alone, where it could be built
    with_native = fused and cpu and _has_native()
    if cpu:
        print(f"compiled CPU kernel (adgan.search.native): {'yes' if _has_native() else 'no'}")
    print(
        f"{'seeds':>5} {'variant':>9} {'img/s':>8} {'GFLOP/s':>8} {'state GB/s':>10} "
        f"{'compute':>8} {'traffic':>8} {'of roof':>8} {'peak RSS MB':>11} {'GPU MB':>7}"
    )
    print(f"{'':>5} {'':>9} {'':>8} {'':>8} {'':>10} {'bound':>8} {'bound':>8}")
    last = None
    for seeds in (64,) if args.quick else (8, 64):
        # the loop, exact and mixed alternately, each keeping its best run: the ratio's two
        # sides measured alike (the loop once against the best of two searches read high)
        best: dict[str, tuple] = {}
        for _ in range(max(1, args.repeats) if fused else 1):
            for name in ("loop", "exact", "mixed") if fused else ("loop", "exact"):
                if name == "loop":
                    r = run(args, "loop", seeds, args.loop_images)
                else:
                    r = run(args, args.kernel, seeds, args.images, args.workers, precision=name)
                if name not in best or r[1] > best[name][1]:
                    best[name] = r
        loop = best.pop("loop")
        rows = [("loop", loop)]
        if with_native:  # the same kernel on torch's operations alone
            rows.append(("torch ops", run(args, args.kernel, seeds, args.images, args.workers,
                                          native=False)))  # fmt: skip
        if one_worker:
            rows.append(("1 worker", run(args, args.kernel, seeds, args.images, 1)))
        rows += [(p, r) for p, r in best.items()]
        n = min(args.loop_images, args.images)
        # exact variants agree with the loop to float rounding; mixed to its rounding
        ok = all(
            np.allclose(r[0][:n], loop[0][:n], rtol=1e-3 if name != "mixed" else 1e-2)
            for name, r in rows
        )
        found = {}
        for name, r in rows:
            gfl = r[1] * r[4] / 1e9
            gbs = r[1] * r[6] / 1e9
            compute = peak_flops * 1e9 / r[4]  # images/s at the matmul rate
            traffic = stream * 1e9 / r[6]  # images/s at the streaming rate
            frac = r[1] / min(compute, traffic)
            found[name] = (r, frac)
            print(
                f"{seeds:>5} {name:>9} {r[1]:>8.3f} {gfl:>8.1f} {gbs:>10.1f} {compute:>8.2f} "
                f"{traffic:>8.2f} {frac:>8.2f} {r[2]:>11.0f} {r[3]:>7.0f}"
            )
        print(
            f"      seeds={seeds}: scores agree with the loop (rtol 1e-3; mixed 1e-2): {ok}; "
            f"generator parameters {loop[5]:,}; state bytes per image: exact "
            f"{best['exact'][6] / 1e9:.2f} GB" + (
                f", mixed {best['mixed'][6] / 1e9:.2f} GB" if "mixed" in best else "")
        )  # fmt: skip
        if not ok:
            raise SystemExit("the kernels disagree: the timing is void")
        dflt, frac = found[default if default in found else "exact"]
        ratio = dflt[1] / loop[1]
        speedup = best["mixed"][1] / best["exact"][1] if "mixed" in best else float("nan")
        peak = dflt[2] if not args.device.startswith("cuda") else dflt[3]
        print(f"      seeds={seeds}: default ({default}) / loop {ratio:.2f}x, "
              f"mixed / exact {speedup:.2f}x")  # fmt: skip
        last = (ratio, frac, speedup, peak)
    print(
        f"ratio={last[0]:.2f} fraction_of_roofline={last[1]:.3f} traffic_speedup={last[2]:.2f} "
        f"peak_rss_mb={last[3]:.0f}"
    )


if __name__ == "__main__":
    main()
