"""Training throughput of the WGAN behind ADGAN: generator iterations/s and images/s.

Trains on random images for a few dozen generator iterations per setting and times the
iterations after the first ``--skip`` (past WGAN's 100-critic-step start and the warm-up).
"Critic images/s" counts the real images the critic sees (batch x critic steps per
generator iteration), the usual measure of GAN training throughput.

    python benchmarks/train_speed.py           # 2 CPU cores: a few minutes
    python benchmarks/train_speed.py --quick   # the cpu preset's setting alone

To compare two versions of the library on a busy machine, run each in turn a few times
(``PYTHONPATH=other/src python benchmarks/train_speed.py --quick``) and compare the best.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from adgan.nets.dcgan import DCGANConfig
from adgan.training import TrainConfig, train_wgan


def measure(size, channels, width, latent, objective, iterations, skip, batch, device):
    x = torch.rand(512, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    arch = DCGANConfig(
        image_size=size,
        channels=channels,
        latent_dim=latent,
        width=width,
        critic_norm="batch" if objective == "wgan" else "layer",
    )
    cfg = TrainConfig(objective=objective, iterations=iterations, batch_size=batch)
    stamps: dict[int, float] = {}

    def progress(it, rec):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps[it] = time.perf_counter()

    train_wgan(x, arch, cfg, seed=0, device=device, progress=progress)
    its = sorted(stamps)
    a, b = next(i for i in its if i > skip), its[-1]
    rate = (b - a) / (stamps[b] - stamps[a])
    return rate, rate * cfg.n_critic * batch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--skip", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="the cpu preset's setting (wgan-gp) only")
    args = ap.parse_args()
    import adgan

    print(
        f"device {args.device}: {cpu_model()} ({platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}; adgan from "
        f"{Path(adgan.__file__).parent}; batch {args.batch}, 5 critic steps per generator step"
    )
    print(f"{'setting':>34} {'objective':>9} {'gen it/s':>9} {'critic img/s':>12}")
    settings = [
        ("MNIST cpu preset (28px x1, w32)", 28, 1, 32, 256),
        ("paper, CIFAR-10 (32px x3, w64)", 32, 3, 64, 256),
    ]
    if args.quick:
        settings = settings[:1]
    for name, size, ch, width, latent in settings:
        for objective in ("wgan-gp",) if args.quick else ("wgan", "wgan-gp"):
            it_s, img_s = measure(
                size, ch, width, latent, objective, args.iterations, args.skip, args.batch,
                args.device,
            )  # fmt: skip
            print(f"{name:>34} {objective:>9} {it_s:>9.2f} {img_s:>12.0f}")


if __name__ == "__main__":
    main()
