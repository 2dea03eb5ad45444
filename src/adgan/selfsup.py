"""A self-supervised score on the critic's features: how well the normal class's rotations
(and, optionally, shifts) are told apart.

After the GAN is trained, a copy of the critic's convolutional body gets a 4-way linear head
and is trained on the normal training images to say by how much an image was rotated (0, 90,
180 or 270 degrees). An image's score is the cross-entropy of the true rotations summed over
the four (Golan & El-Yaniv 2018; Hendrycks et al. 2019): images unlike the normal class are
rotated in ways the network cannot read, so their loss is high. It needs no labels and no
data beyond the normal training images, and reads each image four times through a small
network: cheap next to the latent search.

With ``translation=True`` the network also says by how much the image was shifted before it
was rotated: by a quarter of its size, or not at all, horizontally and vertically (two more
3-way heads; the border filled by reflection), as Hendrycks et al. do for one-class
detection. The score then sums the three heads' cross-entropies over all 36 combinations of
shift and rotation.

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
N_SHIFTS = 3  # shift index 0: none, 1: +size/4, 2: -size/4 (per axis)


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C, H, W) -> the four rotations stacked (4n, C, H, W) and their labels (4n,):
    rotation k of image i is row k * n + i."""
    xs = [torch.rot90(x, k, (2, 3)) for k in range(N_ROTATIONS)]
    return torch.cat(xs), torch.arange(N_ROTATIONS, device=x.device).repeat_interleave(len(x))


def _offset(index: int, size: int) -> int:
    return (0, size // 4, -(size // 4))[index]


def shift(x: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """Image i of (n, C, H, W) moved right by shift index ix[i] and down by iy[i] (0: none,
    1: a quarter of the width or height, 2: minus that), the border filled by reflection
    about the edge pixel (below 4 pixels a quarter rounds to 0: no shift)."""
    h, w = x.shape[2], x.shape[3]
    ph, pw = h // 4, w // 4
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph), mode="reflect")
    out = torch.empty_like(x)
    for a in range(N_SHIFTS):
        for b in range(N_SHIFTS):
            rows = ((ix == a) & (iy == b)).nonzero().flatten()
            if len(rows):
                top, left = ph - _offset(b, h), pw - _offset(a, w)
                out[rows] = xp[rows, :, top : top + h, left : left + w]
    return out


@dataclass(frozen=True)
class RotationConfig:
    steps: int = 1000  # Adam steps of the head and body
    batch_size: int = 64  # images per step (each in its four rotations)
    lr: float = 1e-3
    translation: bool = False  # also predict a shift (two more 3-way heads)

    def validate(self) -> RotationConfig:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError(
                "rotation_steps and rotation_batch must be >= 1 and rotation_lr > 0, got "
                f"{self.steps}, {self.batch_size}, {self.lr}"
            )
        return self


class RotationNet(nn.Module):
    """The critic's body (copied, so the critic is left as it was) and a linear head."""

    def __init__(self, critic: Critic, translation: bool = False):
        super().__init__()
        self.translation = bool(translation)
        self.body = copy.deepcopy(critic.body)
        n_feat = critic.head.in_channels * critic.head.kernel_size[0] * critic.head.kernel_size[1]
        self.head = nn.Linear(n_feat, N_ROTATIONS + 2 * N_SHIFTS * self.translation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 4) rotation logits, or (n, 10) with translation: rotation, then the
        horizontal and the vertical shift's."""
        return self.head(self.body(x).flatten(1))

    def losses(self, x: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        """Per image of (n, C, H, W), shifted by (ix, iy) when the net predicts shifts: the
        summed cross-entropy of every head over its four rotations, (n,)."""
        return self.head_losses(x, ix, iy).sum((0, 2))

    def head_losses(self, x: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        """The cross-entropy of each rotation and head apart, (4, n, heads): heads is 1, or 3
        with shifts (rotation, horizontal shift, vertical shift)."""
        if self.translation:
            x = shift(x, ix, iy)
        xr, yr = rotations(x)
        logits = self(xr)
        parts = [F.cross_entropy(logits[:, :N_ROTATIONS], yr, reduction="none")]
        if self.translation:
            for j, target in enumerate((ix, iy)):
                part = logits[:, N_ROTATIONS + j * N_SHIFTS : N_ROTATIONS + (j + 1) * N_SHIFTS]
                parts.append(F.cross_entropy(part, target.repeat(N_ROTATIONS), reduction="none"))
        return torch.stack(parts, 1).reshape(N_ROTATIONS, len(x), len(parts))


def train_rotation_net(
    critic: Critic, X: torch.Tensor, cfg: RotationConfig, seed: int = 0
) -> RotationNet:
    """Fine-tune a copy of the critic's body with a fresh head on the rotations of X (each
    image in its four rotations; with ``cfg.translation`` each first shifted at random)."""
    cfg = cfg.validate()
    dev = next(critic.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = RotationNet(critic, cfg.translation).to(dev)
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
        if cfg.translation:
            ixy = torch.randint(N_SHIFTS, (2, batch), generator=rng, device=dev)
            loss = net.losses(xb, ixy[0], ixy[1]).mean() / N_ROTATIONS
        else:  # rotations alone: the mean over the 4 * batch rows, as before shifts existed
            xr, yr = rotations(xb)
            loss = F.cross_entropy(net(xr), yr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def transformation_losses(net: RotationNet, X: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Per image and transformation: the cross-entropy of each head, (n, T) with T = 4
    rotations, or with shifts 9 shifts x 4 rotations x 3 heads = 108 (shift-major, then
    rotation, then head). Their sum over T is :func:`rotation_loss`."""
    net.eval()
    dev = next(net.parameters()).device
    n_shifts = N_SHIFTS if net.translation else 1
    grid = [(a, b) for a in range(n_shifts) for b in range(n_shifts)]
    out = []
    for i in range(0, len(X), batch):
        x = X[i : i + batch].to(dev)
        cols = []
        for a, b in grid:
            ix = torch.full((len(x),), a, dtype=torch.long, device=dev)
            iy = torch.full((len(x),), b, dtype=torch.long, device=dev)
            cols.append(net.head_losses(x, ix, iy).permute(1, 0, 2).reshape(len(x), -1))
        out.append(torch.cat(cols, 1).double().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def rotation_loss(net: RotationNet, X: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Per image: the cross-entropy of its true rotations, summed over the four (n,); for a
    net that predicts shifts, that of all three heads summed over the 36 combinations of
    shift and rotation. Higher = the transformations are harder to tell = more anomalous."""
    return transformation_losses(net, X, batch).sum(1)
