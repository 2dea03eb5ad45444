"""AnoGAN (Schlegl et al., 2017) on the same trained generator and critic as ADGAN."""

from __future__ import annotations

import numpy as np
import torch

from adgan.detectors.adgan import ADGAN


class AnoGAN(ADGAN):
    """AnoGAN's score on ADGAN's WGAN: search z alone (the generator stays fixed) to minimise

        (1 - lambda) * ||x - g(z)||_1 + lambda * ||f(x) - f(g(z))||_1,

    with f the critic's last hidden layer (AnoGAN's feature-matching "discrimination loss"),
    lambda = 0.1 and Gamma = 500 steps as in Schlegl et al.; the anomaly score is that loss
    at the end. All images are searched at once, each with its own z (one Adam over the
    stacked latents is one Adam per image, Adam being element-wise); one seed per image as
    in AnoGAN. Adam's learning rate (0.01 here) is our choice: the paper does not give one.

    Parameters
    ----------
    anogan_steps : int
        Gamma, the number of latent updates (500).
    anogan_lr : float
        Adam's learning rate on z.
    anogan_lambda : float
        Weight of the feature-matching loss (0.1).
    **kwargs
        Every ADGAN parameter (the GAN and its training).

    References
    ----------
    T. Schlegl, P. Seeboeck, S. Waldstein, U. Schmidt-Erfurth, G. Langs. Unsupervised Anomaly
    Detection with Generative Adversarial Networks to Guide Marker Discovery. IPMI 2017.
    """

    _extra = ("anogan_steps", "anogan_lr", "anogan_lambda", "anogan_batch")

    def __init__(
        self,
        *,
        anogan_steps: int = 500,
        anogan_lr: float = 0.01,
        anogan_lambda: float = 0.1,
        anogan_batch: int = 512,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.anogan_steps = anogan_steps
        self.anogan_lr = anogan_lr
        self.anogan_lambda = anogan_lambda
        self.anogan_batch = anogan_batch

    @classmethod
    def _get_param_names(cls):
        return sorted(set(ADGAN._get_param_names()) | set(cls._extra))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                self._search_batch(X[i : i + self.anogan_batch])
                for i in range(0, len(X), self.anogan_batch)
            ]
        )

    def _search_batch(self, X: np.ndarray) -> np.ndarray:
        gen, critic = self.generator_.eval(), self.critic_.eval()
        dev = next(gen.parameters()).device
        x = torch.from_numpy(X).to(dev)
        # the same initial latent (ADGAN's first seed) for every image: a score depends on
        # the image alone
        z = self.z0_[:1].repeat(len(X), 1).to(dev).requires_grad_(True)  # (n, latent)
        opt = torch.optim.Adam([z], lr=self.anogan_lr)
        lam = self.anogan_lambda
        for p in list(gen.parameters()) + list(critic.parameters()):
            p.requires_grad_(False)
        with torch.no_grad():
            fx = critic.features(x)
        try:
            for step in range(self.anogan_steps + 1):
                gz = gen(z)
                loss = (1 - lam) * (x - gz).abs().flatten(1).sum(1) + lam * (
                    fx - critic.features(gz)
                ).abs().flatten(1).sum(1)  # (n,)
                if step == self.anogan_steps:
                    break
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()  # per-image terms: each z gets its own gradient
                opt.step()
        finally:
            for p in list(gen.parameters()) + list(critic.parameters()):
                p.requires_grad_(True)
        return -loss.detach().cpu().numpy().astype(np.float64)
