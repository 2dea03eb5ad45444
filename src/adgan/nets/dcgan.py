"""DCGAN generator and critic (Radford et al. 2016), for square images of any size s0 * 2**m.

The spatial size starts at s0 (3 to 7) and doubles m times: 28 px = 7 * 2**2, 32 px = 4 * 2**3,
64 px = 4 * 2**4, 8 px = 4 * 2**1. Channel widths halve as the size doubles, as in DCGAN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from adgan.errors import ConfigError
from adgan.params import COUNT, MAX_NET_PARAMETERS, check_image_size


def stem_size(image_size: int) -> tuple[int, int]:
    """(s0, m) with image_size = s0 * 2**m, s0 in 3..7 and m >= 1 as large as possible."""
    m = 0
    while image_size % 2 ** (m + 1) == 0 and image_size // 2 ** (m + 1) >= 3:
        m += 1
    s0 = image_size // 2**m
    if m < 1 or not 3 <= s0 <= 7:
        raise ConfigError(
            f"image_size: expected s0 * 2**m with s0 in 3..7 and m >= 1 (e.g. 8, 16, 28, 32, 64), "
            f"got {image_size}"
        )
    return s0, m


@dataclass(frozen=True)
class DCGANConfig:
    """Architecture of a generator / critic pair; JSON-serialisable."""

    image_size: int = 32
    channels: int = 1
    latent_dim: int = 256  # the paper's d'
    width: int = 64  # channels of the widest-resolution hidden layer (DCGAN's ngf / ndf)
    critic_norm: str = "batch"  # "batch" (DCGAN, weight clipping), "layer" or "none" (WGAN-GP)

    def validate(self) -> DCGANConfig:
        """ConfigError for a setting out of range, or for networks of more than
        ``MAX_NET_PARAMETERS`` parameters: checked before anything is allocated (an
        architecture read from a file is untrusted)."""
        check_image_size(self.image_size)
        stem_size(self.image_size)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"channels: expected 1 or 3, got {self.channels!r}")
        for name in ("latent_dim", "width"):
            if not COUNT.accepts(getattr(self, name)):
                value = getattr(self, name)
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        n = self.n_parameters()
        if n > MAX_NET_PARAMETERS:
            raise ConfigError(
                f"latent_dim {self.latent_dim}, width {self.width} and image_size "
                f"{self.image_size} give networks of {n} parameters, over the "
                f"{MAX_NET_PARAMETERS} accepted; use a smaller width or latent_dim"
            )
        if self.critic_norm not in ("batch", "layer", "none"):
            raise ConfigError(
                f"critic_norm: expected batch, layer or none, got {self.critic_norm!r}"
            )
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def n_parameters(self) -> int:
        """Weights of the larger network of the pair (generator or critic), counted from
        the settings alone."""
        s0, m = stem_size(self.image_size)
        w, c = self.width, self.channels
        gen = [w * 2 ** (m - 1 - i) for i in range(m)] + [c]
        n_gen = self.latent_dim * gen[0] * s0 * s0 + 2 * sum(gen[:-1])
        n_gen += sum(16 * a * b for a, b in zip(gen[:-1], gen[1:], strict=True))
        crit = [c] + [w * 2**i for i in range(m)]
        n_crit = sum(16 * a * b + 3 * b for a, b in zip(crit[:-1], crit[1:], strict=True))
        n_crit += crit[-1] * s0 * s0
        return max(n_gen, n_crit)


class Generator(nn.Module):
    """z (n, latent_dim) -> images (n, channels, size, size) in [-1, 1].

    Layer i is ``convs[i]`` (a ConvTranspose2d without bias), then ``norms[i]`` (BatchNorm2d) and
    ReLU for every layer but the last, which ends in tanh. The batched latent search in
    ``adgan.search`` reads these same modules.
    """

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config.validate()
        s0, m = stem_size(config.image_size)
        widths = [config.width * 2 ** (m - 1 - i) for i in range(m)] + [config.channels]
        self.convs = nn.ModuleList(
            [nn.ConvTranspose2d(config.latent_dim, widths[0], s0, 1, 0, bias=False)]
            + [nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=False) for i in range(m)]
        )
        self.norms = nn.ModuleList([nn.BatchNorm2d(w) for w in widths[:-1]])
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z.reshape(z.shape[0], -1, 1, 1)  # (n, latent, 1, 1)
        for conv, norm in zip(self.convs[:-1], self.norms, strict=True):
            h = torch.relu(norm(conv(h)))
        return torch.tanh(self.convs[-1](h))


class Critic(nn.Module):
    """images -> one real number each (the WGAN critic d_omega); ``features`` gives the last
    hidden layer, which AnoGAN's feature-matching loss uses."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config.validate()
        s0, m = stem_size(config.image_size)
        widths = [config.channels] + [config.width * 2**i for i in range(m)]
        layers: list[nn.Module] = []
        for i in range(m):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(_norm(config.critic_norm, widths[i + 1]))
            layers.append(nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, s0, 1, 0, bias=False)
        self.apply(dcgan_init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).reshape(-1)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # per-sample normalisation keeps the gradient penalty valid
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights, N(1, 0.02) norm scales, zero biases."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
