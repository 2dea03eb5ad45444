"""Candidate speed-ups of a WGAN-GP critic step, alternating in one process: adgan.training's
step ("plain": per-parameter Adam, a critic pass per batch) against torch's multi-tensor
Adam ("foreach"), one critic pass over the real and fake images together ("one pass", the
same result without BatchNorm), and both. Prints the best milliseconds of each over
``--rounds`` rounds of ``--steps`` steps.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step_ab.py   # the cpu preset's networks
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from adgan.nets.dcgan import Critic, DCGANConfig, Generator
from adgan.training import gradient_penalty


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    arch = DCGANConfig(image_size=args.size, channels=args.channels, latent_dim=256,
                       width=args.width, critic_norm="layer")  # fmt: skip
    torch.manual_seed(0)
    gen = Generator(arch)
    # (one critic pass, multi-tensor Adam) per variant
    variants = {"plain": (False, False), "one pass": (True, False), "foreach": (False, True),
                "both": (True, True)}  # fmt: skip
    nets = {k: Critic(arch) for k in variants}
    opts = {k: torch.optim.Adam(nets[k].parameters(), 1e-4, (0.5, 0.9), foreach=v[1])
            for k, v in variants.items()}  # fmt: skip
    X = torch.rand(512, args.channels, args.size, args.size) * 2 - 1
    rng = torch.Generator().manual_seed(0)

    def step(name):
        critic, opt = nets[name], opts[name]
        real = X[torch.randint(len(X), (args.batch,), generator=rng)]
        with torch.no_grad():
            fake = gen(torch.randn(args.batch, 256, generator=rng))
        if not variants[name][0]:
            w = critic(real).mean() - critic(fake).mean()
        else:
            out = critic(torch.cat([real, fake]))
            w = out[: len(real)].mean() - out[len(real) :].mean()
        loss = -w + 10 * gradient_penalty(critic, real, fake, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    best = {k: float("inf") for k in variants}
    for name in best:
        step(name)  # warm-up
    for _ in range(args.rounds):
        for name in best:
            t = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            best[name] = min(best[name], (time.perf_counter() - t) / args.steps * 1e3)
    print(f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{args.size}px x{args.channels}, width {args.width}, batch {args.batch}")  # fmt: skip
    print("critic step ms: " + ", ".join(f"{k} {v:.2f}" for k, v in best.items())
          + f"; plain / both {best['plain'] / best['both']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
