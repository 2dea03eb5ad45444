"""Speed of ADGAN's latent search: the plain per-seed loop against the project's kernels.

In one run, on the same images and seeds: times the reference loop (a deep copy of the
generator and two torch.optim.Adam per seed) and the project's search, checks that their
scores agree, and prints images/s, their ratio, the achieved GFLOP/s (counted from the layer
shapes) as a fraction of the fp32 matmul throughput measured in the same run, and the peak
memory of each (each variant runs in its own process). At the paper's settings (64 seeds,
5 steps) and at 8 seeds.

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
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2.0 * n**3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _worker(args, kernel, seeds, n_images, q):
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
    cfg = SearchConfig(n_seeds=seeds, steps=args.steps, kernel=kernel)
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


def run(args, kernel, seeds, n_images):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(args, kernel, seeds, n_images, q))
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
    ap.add_argument("--quick", action="store_true", help="fewer images: minutes on 2 CPU cores")
    args = ap.parse_args()
    if args.quick:
        args.images, args.loop_images = 4, 1
    peak_flops = matmul_gflops(args.device)
    print(
        f"device {args.device} ({platform.machine()}, {torch.get_num_threads()} threads), "
        f"torch {torch.__version__}; generator {args.size}px x{args.channels}, width "
        f"{args.width}, latent {args.latent}; steps {args.steps}"
    )
    print(f"fp32 matmul (2048^3): {peak_flops:.1f} GFLOP/s")
    print(
        f"{'seeds':>5} {'variant':>8} {'img/s':>8} {'GFLOP/s':>8} {'of matmul':>9} "
        f"{'peak RSS MB':>11} {'GPU MB':>7}"
    )
    last = None
    for seeds in (8, 64):
        loop = run(args, "loop", seeds, args.loop_images)
        fast = run(args, args.kernel, seeds, args.images)
        n = min(args.loop_images, args.images)
        ok = np.allclose(fast[0][:n], loop[0][:n], rtol=1e-3)
        for name, r in (("loop", loop), (args.kernel, fast)):
            gfl = r[1] * r[4] / 1e9
            print(
                f"{seeds:>5} {name:>8} {r[1]:>8.3f} {gfl:>8.1f} {gfl / peak_flops:>9.2%} "
                f"{r[2]:>11.0f} {r[3]:>7.0f}"
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
