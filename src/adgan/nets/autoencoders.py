"""DCGAN-like convolutional autoencoders for the DCAE and VAE baselines (Section 4.2).

The encoder mirrors the DCGAN critic (4x4 stride-2 convolutions, widths doubling as the size
halves, then an s0 x s0 convolution to the code) but with batch norm and ReLU after every
convolution, as the paper states for both baselines; the decoder *is* the DCGAN generator of
``adgan.nets.dcgan`` (batch norm and ReLU, tanh output in [-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from adgan.errors import ConfigError
from adgan.nets.dcgan import DCGANConfig, Generator, dcgan_init, stem_size


@dataclass(frozen=True)
class AEConfig:
    """Architecture of an autoencoder; JSON-serialisable."""

    image_size: int = 32
    channels: int = 1
    latent_dim: int = 32
    width: int = 64
    variational: bool = False
    decoder_std: float | None = None  # VAE only: None learns one scalar std for all pixels

    def validate(self) -> AEConfig:
        self.dcgan().validate()
        if self.decoder_std is not None and not self.decoder_std > 0:
            raise ConfigError(
                f"decoder_std: expected a positive number or None, got {self.decoder_std}"
            )
        return self

    def dcgan(self) -> DCGANConfig:
        return DCGANConfig(
            image_size=self.image_size,
            channels=self.channels,
            latent_dim=self.latent_dim,
            width=self.width,
        )

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """images (n, C, s, s) -> (n, out_dim)."""

    def __init__(self, config: AEConfig, out_dim: int):
        super().__init__()
        s0, m = stem_size(config.image_size)
        widths = [config.channels] + [config.width * 2**i for i in range(m)]
        layers: list[nn.Module] = []
        for i in range(m):
            # no conv bias: the batch norm right after removes it
            layers += [
                nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=False),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], out_dim, s0, 1, 0)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).flatten(1)


class ConvAutoencoder(nn.Module):
    """The DCAE: x -> encoder -> code (latent_dim) -> DCGAN generator -> reconstruction."""

    def __init__(self, config: AEConfig):
        super().__init__()
        self.config = config.validate()
        self.encoder = Encoder(config, config.latent_dim)
        self.decoder = Generator(config.dcgan())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ConvVAE(nn.Module):
    """A VAE with a Gaussian encoder q(z|x) = N(mu, diag exp(logvar)) and a Gaussian decoder
    p(x|z) = N(decoder(z), sigma^2 I), sigma one scalar (learned, or fixed by
    ``config.decoder_std``); the prior is N(0, I)."""

    def __init__(self, config: AEConfig):
        super().__init__()
        self.config = config.validate()
        self.encoder = Encoder(config, 2 * config.latent_dim)
        self.decoder = Generator(config.dcgan())
        std = 1.0 if config.decoder_std is None else float(config.decoder_std)
        self.log_std = nn.Parameter(
            torch.tensor(math.log(std)), requires_grad=config.decoder_std is None
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp(logvar) finite early in training

    def nll(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) per image, summed over pixels, for decoder means ``mean``."""
        log_std = self.log_std
        sq = ((x - mean) * torch.exp(-log_std)) ** 2
        return 0.5 * (sq + 2.0 * log_std + math.log(2.0 * math.pi)).flatten(1).sum(1)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) per image, in closed form."""
        return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)

    def neg_elbo(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """-ELBO per image, the expectation over q estimated with standard-normal draws
        ``eps``: (k, latent_dim) shared by all images or (n, k, latent_dim) per image;
        z_j = mu + exp(logvar / 2) * eps_j."""
        mu, logvar = self.encode(x)
        eps = eps if eps.dim() == 3 else eps[None]
        k = eps.shape[1]
        z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps  # (n, k, d)
        mean = self.decoder(z.reshape(-1, z.shape[-1]))
        xk = x.repeat_interleave(k, dim=0)
        nll = self.nll(xk, mean).reshape(len(x), k).mean(1)
        return nll + self.kl(mu, logvar)
