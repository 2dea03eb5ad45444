"""Section 4.3's discriminator score: the trained critic's output on an image."""

from __future__ import annotations

import numpy as np
import torch

from adgan.detectors.gan_based import (
    COMMON_CONSTRAINTS,
    GAN_CONSTRAINTS,
    GANDetector,
    store_params,
)

#: images through the critic at once
BATCH = 512


class DiscriminatorScore(GANDetector):
    """Section 4.3's alternative: score_samples = the trained critic's output (higher = more
    real = normal), on the GAN ADGAN trains (its parameters are ADGAN's: the architecture
    and training, ``contamination``, ``calibration``, ``random_state``, ``device``,
    ``work_dir`` and ``verbose``).

    A baseline to report, not a detector to rely on: a Wasserstein critic is trained to tell
    real images from generated ones, not to rank real images, and its score on test images
    changes with the GAN's training seed (MNIST at the ``cpu`` preset, two GANs per class:
    by up to 0.165 ROC-AUC on a class, the ten-class mean near 0.31, below chance, in both;
    docs/results.md)."""

    detector_name = "discriminator"
    param_constraints = {**GAN_CONSTRAINTS, **COMMON_CONSTRAINTS}

    def __init__(
        self,
        *,
        latent_dim: int = 256,
        width: int = 64,
        objective: str = "wgan",
        iterations: int = 1000,
        batch_size: int = 64,
        n_critic: int = 5,
        lr: float | None = None,
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int = 0,
        device: str = "auto",
        work_dir: str | None = None,
        verbose: bool = False,
    ):
        store_params(self, locals())

    def _score(self, X: np.ndarray) -> np.ndarray:
        critic = self.gan_.critic
        dev = next(critic.parameters()).device
        out = []
        with torch.no_grad():
            for i in range(0, len(X), BATCH):
                out.append(critic(torch.from_numpy(X[i : i + BATCH]).to(dev)).cpu().numpy())
        return np.concatenate(out).astype(np.float64)
