"""What the detectors scoring with a trained GAN share: the GAN's parameters, and the GAN
itself held by composition (``gan_``, an ``adgan.gan.FittedGAN``).

ADGAN, the prior-likelihood and discriminator scores and AnoGAN each take the GAN's
parameters (``GAN_CONSTRAINTS``: its architecture and training; the benchmark passes one
preset's parameters to all of them, and with the same parameters and ``work_dir`` they
share one trained GAN) and their own, and nothing else.
"""

from __future__ import annotations

import numpy as np

from adgan.base import BaseDetector, resolve_device
from adgan.gan import FittedGAN, gan_architecture
from adgan.params import (
    CALIBRATION,
    CONTAMINATION,
    COUNT,
    DEVICE,
    RATE,
    SEED,
    Bool,
    Int,
    Options,
    PathName,
    optional,
)
from adgan.training import TrainConfig

#: the GAN's parameters: architecture and training
GAN_CONSTRAINTS = {
    "latent_dim": COUNT,
    "width": COUNT,
    "objective": Options("wgan", "wgan-gp"),
    "iterations": Int(ge=0),
    "batch_size": COUNT,
    "n_critic": COUNT,
    "lr": optional(RATE),
}
#: the parameters of every GAN-based detector beside the GAN's and its own
COMMON_CONSTRAINTS = {
    "contamination": CONTAMINATION,
    "calibration": CALIBRATION,
    "random_state": SEED,
    "device": DEVICE,
    "work_dir": optional(PathName()),
    "verbose": Bool(),
}


def store_params(detector: BaseDetector, params: dict) -> None:
    """``__init__``'s body: every argument kept as the attribute of its name, nothing else
    (scikit-learn's rule; ``params`` is ``locals()``)."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(detector, name, value)


class GANDetector(BaseDetector):
    """Base of the GAN-based detectors: ``_fit`` trains the GAN (with ``work_dir``: resumes
    its checkpoint there, or reuses a finished one), and the detector's file holds it.

    Attributes
    ----------
    gan_ : FittedGAN
        The trained GAN; ``generator_``, ``critic_`` and ``z0_`` are its parts.
    offset_ : float
        Threshold on score_samples.
    """

    def _n_latents(self) -> int:
        """How many initial latents the detector draws with its GAN."""
        return 0

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            objective=self.objective,
            iterations=self.iterations,
            batch_size=self.batch_size,
            n_critic=self.n_critic,
            lr=self.lr,
        ).validate()

    def _fit(self, X: np.ndarray) -> None:
        self.gan_ = FittedGAN.fit(
            X,
            gan_architecture(X.shape[1:], self.latent_dim, self.width, self.objective),
            self.train_config(),
            seed=self.random_state,
            n_latents=self._n_latents(),
            device=resolve_device(self.device),
            work_dir=self.work_dir,
            verbose=self.verbose,
        )

    # the GAN's parts, as earlier versions named them
    @property
    def generator_(self):
        return self.gan_.generator

    @property
    def critic_(self):
        return self.gan_.critic

    @property
    def z0_(self):
        return self.gan_.z0

    @property
    def train_history_(self) -> list[dict]:
        return self.gan_.history

    def _get_state(self) -> dict:
        return self.gan_.state()

    def _set_state(self, state: dict) -> None:
        self.gan_ = FittedGAN.from_state(
            state,
            resolve_device(self.device),
            train_config=self.train_config(),
            seed=self.random_state,
        )
