"""A trained GAN as one object, which the GAN-based detectors hold by composition.

``FittedGAN`` has the generator, the critic, the moving averages of the generator's weights
(decay -> generator), the initial latent vectors z0 shared by all images, and the settings
it was trained with. ``FittedGAN.fit`` trains one on images (``training.train_gan``: with a
``work_dir`` the checkpoint there is resumed, or reused when finished); ``save`` / ``load``
write and read it as one file of tensors, numbers and strings (``weights_only``), and
``state`` / ``from_state`` give the same as a dict for a detector's file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from adgan.errors import CheckpointError, ConfigError, DataError
from adgan.files import atomic_torch_save, check_header, header, load_state, safe_torch_load
from adgan.nets.dcgan import Critic, DCGANConfig, Generator
from adgan.progress import progress_bar
from adgan.training import TrainConfig, train_gan

FORMAT = "adgan-fitted-gan"
#: the initial latents are drawn with this offset to the GAN's seed (training uses the seed)
Z0_SEED_OFFSET = 7919


def gan_architecture(shape, latent_dim: int, width: int, objective: str) -> DCGANConfig:
    """The DCGAN for images of ``shape`` (C, H, W): square, its critic normalised by batch
    norm under weight clipping (``wgan``) and by layer norm under a gradient penalty."""
    c, h, w = shape
    if h != w:
        raise DataError(f"X: expected square images, got {h}x{w}")
    norm = "batch" if objective == "wgan" else "layer"
    return DCGANConfig(
        image_size=h, channels=c, latent_dim=latent_dim, width=width, critic_norm=norm
    ).validate()


def initial_latents(seed: int, n: int, latent_dim: int) -> torch.Tensor:
    """z0 (n, latent_dim) ~ N(0, I), drawn from ``seed`` (+ ``Z0_SEED_OFFSET``)."""
    g = torch.Generator().manual_seed(int(seed) + Z0_SEED_OFFSET)
    return torch.randn(n, latent_dim, generator=g)


@dataclass
class FittedGAN:
    """A trained generator and critic with what the detectors read from them.

    Attributes
    ----------
    generator, critic : the trained networks, in eval mode.
    generator_ema : decay -> a generator holding that exponential moving average of the
        generator's weights over training (BatchNorm statistics re-estimated for it).
    z0 : (n, latent_dim) initial latent vectors, the same for every image.
    train_config : the training settings; ``seed`` seeds training and z0.
    history : the loss log of training (empty after ``load``).
    """

    generator: Generator
    critic: Critic
    generator_ema: dict[float, Generator]
    z0: torch.Tensor
    train_config: TrainConfig
    seed: int
    history: list[dict] = field(default_factory=list)

    @property
    def arch(self) -> DCGANConfig:
        return self.generator.config

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        arch: DCGANConfig,
        train_config: TrainConfig,
        *,
        seed: int,
        n_latents: int,
        device: torch.device | str = "cpu",
        work_dir: str | os.PathLike | None = None,
        verbose: bool = False,
    ) -> FittedGAN:
        """Train on images X (n, C, H, W) in [-1, 1] (float32); ``n_latents`` initial
        latents. With ``work_dir``, training is checkpointed there, resumed, or reused."""
        with progress_bar(verbose, train_config.iterations, "train WGAN", "it") as bar:

            def progress(it, rec):
                bar.n = it
                bar.set_postfix(W=f"{rec['wasserstein_estimate']:.3g}", refresh=False)
                bar.refresh()

            res = train_gan(
                torch.from_numpy(X),
                arch,
                train_config,
                seed=seed,
                device=device,
                out_dir=work_dir,
                progress=progress,
            )
        z0 = initial_latents(seed, n_latents, arch.latent_dim)
        return cls(
            res.generator, res.critic, res.generator_ema, z0, train_config, seed, res.history
        )

    # -- files ----------------------------------------------------------------------------
    def state(self) -> dict:
        """Tensors, numbers and strings: the architecture and training settings as JSON."""

        def cpu(module):
            return {k: v.detach().cpu() for k, v in module.state_dict().items()}

        return {
            "arch": json.dumps(self.arch.to_dict()),
            "train": json.dumps(asdict(self.train_config)),
            "seed": int(self.seed),
            "generator": cpu(self.generator),
            "critic": cpu(self.critic),
            "generator_ema": {repr(d): cpu(g) for d, g in self.generator_ema.items()},
            "z0": self.z0.detach().cpu(),
        }

    @classmethod
    def from_state(
        cls,
        state: dict,
        device: torch.device | str = "cpu",
        where: str = "detector file",
        train_config: TrainConfig | None = None,
        seed: int = 0,
    ) -> FittedGAN:
        """The inverse of ``state``. Files written before the moving averages and the
        training settings were kept have none: ``train_config`` and ``seed`` stand in."""
        arch = DCGANConfig(**json.loads(state["arch"]))
        try:  # an untrusted file's architecture, checked before any network is built
            arch.validate()
        except ConfigError as exc:
            raise CheckpointError(f"{where}: architecture refused ({exc})") from exc

        def build(net, key, what):
            load_state(net, key, where, what)
            return net.to(device).eval()

        gen = build(Generator(arch), state["generator"], "generator")
        critic = build(Critic(arch), state["critic"], "critic")
        ema = {
            float(d): build(Generator(arch), sd, f"moving-average generator {d}")
            for d, sd in state.get("generator_ema", {}).items()
        }
        if "train" in state:
            train_config = TrainConfig(**_tuples(json.loads(state["train"])))
        return cls(
            gen,
            critic,
            ema,
            state["z0"],
            train_config or TrainConfig(),
            int(state.get("seed", seed)),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """One file, written atomically; ``FittedGAN.load`` reads it."""
        return atomic_torch_save({**header(FORMAT), **self.state()}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> FittedGAN:
        blob = safe_torch_load(path, "fitted GAN")
        check_header(blob, FORMAT, path, "fitted GAN file")
        return cls.from_state(blob, device, where=str(path))


def _tuples(d: dict) -> dict:
    """JSON lists back to the tuples a dataclass field holds (``betas``)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
