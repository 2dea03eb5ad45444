"""A self-supervised score on the critic's features: how well the normal class's rotations
are told apart.

After the GAN is trained, a copy of the critic's convolutional body gets a 4-way linear head
and is trained on the normal training images to say by how much an image was rotated (0, 90,
180 or 270 degrees). An image's score is the cross-entropy of the true rotations summed over
the four (Golan & El-Yaniv 2018; Hendrycks et al. 2019): images unlike the normal class are
rotated in ways the network cannot read, so their loss is high. It needs no labels and no
data beyond the normal training images, and reads each image four times through a small
network: cheap next to the latent search.

References
----------
I. Golan, R. El-Yaniv. Deep Anomaly Detection Using Geometric Transformations. NeurIPS 2018.
D. Hendrycks, M. Mazeika, S. Kadavath, D. Song. Using Self-Supervised Learning Can Improve
Model Robustness and Uncertainty. NeurIPS 2019.
T. Chen, X. Zhai, M. Ritter, M. Lucic, N. Houlsby. Self-Supervised GANs via Auxiliary
Rotation Loss. CVPR 2019 (the same head on a GAN's discriminator).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adgan.errors import ConfigError
from adgan.nets.dcgan import Critic

N_ROTATIONS = 4


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C, H, W) -> the four rotations stacked (4n, C, H, W) and their labels (4n,):
    rotation k of image i is row k * n + i."""
    xs = [torch.rot90(x, k, (2, 3)) for k in range(N_ROTATIONS)]
    return torch.cat(xs), torch.arange(N_ROTATIONS, device=x.device).repeat_interleave(len(x))


@dataclass(frozen=True)
class RotationConfig:
    steps: int = 1000  # Adam steps of the head and body
    batch_size: int = 64  # images per step (each in its four rotations)
    lr: float = 1e-3

    def validate(self) -> RotationConfig:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError(
                "rotation_steps and rotation_batch must be >= 1 and rotation_lr > 0, got "
                f"{self.steps}, {self.batch_size}, {self.lr}"
            )
        return self


class RotationNet(nn.Module):
    """The critic's body (copied, so the critic is left as it was) and a linear head."""

    def __init__(self, critic: Critic):
        super().__init__()
        self.body = copy.deepcopy(critic.body)
        n_feat = critic.head.in_channels * critic.head.kernel_size[0] * critic.head.kernel_size[1]
        self.head = nn.Linear(n_feat, N_ROTATIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))  # (n, 4) logits


def train_rotation_net(
    critic: Critic, X: torch.Tensor, cfg: RotationConfig, seed: int = 0
) -> RotationNet:
    """Fine-tune a copy of the critic's body with a fresh head on the rotations of X."""
    cfg = cfg.validate()
    dev = next(critic.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RotationNet(critic).to(dev)
    for p in net.parameters():
        p.requires_grad_(True)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    rng = torch.Generator(device=dev)
    rng.manual_seed(seed)
    X = X.to(dev)
    batch = min(cfg.batch_size, len(X))
    for _ in range(cfg.steps):
        xb = X[torch.randint(len(X), (batch,), generator=rng, device=dev)]
        xr, yr = rotations(xb)
        loss = F.cross_entropy(net(xr), yr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def rotation_loss(net: RotationNet, X: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Per image: the cross-entropy of its true rotations, summed over the four (n,).
    Higher = the rotations are harder to tell = more anomalous."""
    net.eval()
    dev = next(net.parameters()).device
    out = []
    for i in range(0, len(X), batch):
        x = X[i : i + batch].to(dev)
        xr, yr = rotations(x)
        nll = F.cross_entropy(net(xr), yr, reduction="none")  # (4b,)
        out.append(nll.reshape(N_ROTATIONS, len(x)).sum(0).cpu().numpy())
    return np.concatenate(out).astype(np.float64)
