"""How the cost of ADGAN's latent search grows with seeds, steps, image size and images.

Times the project's search (the default kernel) at several points along each axis, the
others held at a base point, and prints images/s, seconds per image and the cost relative
to the base point. Each point is the best of three calls after a warm-up on the same
generator; the generator is a randomly initialised DCGAN with realistic BatchNorm statistics
(speed does not depend on training).

    python benchmarks/search_cost.py            # 2 CPU cores: about three minutes
    python benchmarks/search_cost.py --quick    # fewer points
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from adgan.nets.dcgan import DCGANConfig, Generator
from adgan.search import SearchConfig, latent_search
from adgan.torch_utils import flush_denormals


def generator(size: int, channels: int, width: int, latent: int, device: str) -> Generator:
    torch.manual_seed(0)
    gen = Generator(
        DCGANConfig(image_size=size, channels=channels, latent_dim=latent, width=width)
    ).to(device)
    gen.train()
    with torch.no_grad():
        gen(torch.randn(256, latent, device=device))
    return gen.eval()


def time_search(gen, n_images: int, seeds: int, steps: int, device: str, reps: int = 3) -> float:
    """Seconds per image: the best of ``reps`` calls after a warm-up (a single call is
    exposed to a shared machine's noise)."""
    c, s = gen.config.channels, gen.config.image_size
    z0 = torch.randn(seeds, gen.config.latent_dim, generator=torch.Generator().manual_seed(1))
    x = torch.rand(n_images, c, s, s, generator=torch.Generator().manual_seed(2)) * 2 - 1
    cfg = SearchConfig(n_seeds=seeds, steps=steps)
    latent_search(gen, x.to(device), z0.to(device), cfg)  # warm-up: the same chunks
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        latent_search(gen, x.to(device), z0.to(device), cfg)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best / n_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--latent", type=int, default=256)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3, help="timed calls per point (the best)")
    args = ap.parse_args()
    base = dict(size=28, seeds=64, steps=5, images=4)
    axes = {
        "seeds": [8, 16, 32, 64, 128],
        "steps": [1, 2, 5, 10],
        "size": [16, 28, 32, 64],
        "images": [1, 4, 16],
    }
    if args.quick:
        axes = {"seeds": [8, 64], "steps": [1, 5], "size": [16, 28], "images": [1, 4]}
    print(
        f"device {args.device} ({platform.machine()}, {torch.get_num_threads()} threads), "
        f"torch {torch.__version__}; DCGAN width {args.width}, latent {args.latent}, "
        f"{args.channels} channel(s); base point {base}"
    )
    print(f"{'axis':>7} {'value':>6} {'img/s':>8} {'s/img':>8} {'cost vs base':>12}")
    gens: dict[int, Generator] = {}

    def measure(p: dict) -> float:
        if p["size"] not in gens:
            gens[p["size"]] = generator(
                p["size"], args.channels, args.width, args.latent, args.device
            )
        g = gens[p["size"]]
        return time_search(g, p["images"], p["seeds"], p["steps"], args.device, args.reps)

    with flush_denormals():
        ref = measure(base)
        print(f"{'base':>7} {'':>6} {1 / ref:>8.3f} {ref:>8.3f} {1.0:>12.2f}")
        for axis, values in axes.items():
            for v in values:
                spi = ref if v == base[axis] else measure({**base, axis: v})
                print(f"{axis:>7} {v:>6} {1 / spi:>8.3f} {spi:>8.3f} {spi / ref:>12.2f}")


if __name__ == "__main__":
    main()
