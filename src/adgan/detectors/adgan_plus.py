"""``adgan-plus``: ADGAN with the changes that measured better on training-split holdouts.

The faithful ``adgan`` stays exactly the paper's algorithm; this variant reads the same
trained GAN (one training run serves both) and changes only how an image is scored:

* the latent search runs on an exponential moving average of the generator's weights
  (``ema``), kept during training beside the generator without changing it;
* a self-supervised score joins the reconstruction loss: a copy of the critic's body, given a
  4-way head and trained after the GAN to tell the normal images' rotations apart
  (``adgan.selfsup``); an image whose rotations it cannot tell is unlike the normal class;
  with ``translation=True`` the same network also tells shifts by a quarter of the image;
  with ``standardise_transformations=True`` each transformation's loss is first standardised
  on the calibration images, so that one the normal images find hard or vary on counts less;
* the two are put on one scale with the held-out normal (calibration) images alone: each is
  standardised by its mean and standard deviation over them (the reconstruction loss after a
  logarithm, since it is a positive, skewed quantity), and the anomaly score is their sum,
  the reconstruction part weighted by ``reconstruction_weight`` (1 unless a preset chose
  otherwise on a training-split holdout; 0 drops the search altogether).

docs/results.md gives the holdout measurements that chose each part.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from adgan.base import resolve_device
from adgan.detectors.adgan import SEARCH_CONSTRAINTS, SearchSettings
from adgan.detectors.gan_based import (
    COMMON_CONSTRAINTS,
    GAN_CONSTRAINTS,
    GANDetector,
    store_params,
)
from adgan.errors import ConfigError
from adgan.files import load_state
from adgan.nets.dcgan import Generator
from adgan.params import COUNT, Bool, Constraint, Real
from adgan.progress import progress_bar
from adgan.search import latent_search
from adgan.selfsup import RotationConfig, RotationNet, train_rotation_net, transformation_losses
from adgan.torch_utils import flush_denormals
from adgan.training import EMA_DECAYS


class _Decay(Constraint):
    """0 (the trained generator) or a decay whose moving average training keeps."""

    def accepts(self, value) -> bool:
        return not isinstance(value, bool) and value in (0, *EMA_DECAYS)

    def describe(self) -> str:
        return "0 or one of " + ", ".join(str(d) for d in EMA_DECAYS)


PLUS_CONSTRAINTS = {
    "ema": _Decay(),
    "rotation": Bool(),
    "translation": Bool(),
    "standardise_transformations": Bool(),
    "reconstruction_weight": Real(ge=0),
    "rotation_steps": COUNT,
    "rotation_batch": COUNT,
    "rotation_lr": Real(gt=0),
}


class ADGANPlus(SearchSettings, GANDetector):
    """ADGAN's search on the generator's moving average, plus a rotation score on the
    critic's features, standardised on held-out normal images and summed.

    Parameters
    ----------
    ADGAN's parameters (the GAN, the search, ``calibration``, ``device``, ...; the GAN is
    trained exactly as ADGAN's, so with the same parameters and ``work_dir`` they share
    one), and:

    ema : float
        Decay of the generator's moving average the search runs on (one of
        ``adgan.training.EMA_DECAYS``), or 0 for the trained generator itself.
    rotation : bool
        Add the rotation score; False leaves the reconstruction score alone.
    translation : bool
        The rotation network also tells shifts by a quarter of the image (horizontal and
        vertical, before the rotation) and the rotation score sums over the 36 combinations
        of shift and rotation (``adgan.selfsup``).
    standardise_transformations : bool
        Standardise the loss of every transformation and head (4 rotations, or 108 with
        ``translation``) by its mean and standard deviation over the calibration images
        before summing them into the rotation score, instead of summing the losses
        themselves: a transformation whose loss spreads widely over the normal images weighs
        less, one the normal images tell reliably weighs more.
    reconstruction_weight : float
        Weight of the standardised reconstruction part in the sum (the rotation part's is 1).
        0 leaves the rotation score alone and skips the latent search, so scoring reads no
        generator; it needs ``rotation=True``.
    rotation_steps, rotation_batch, rotation_lr : training of the rotation network (Adam):
        steps, images per step (each in its four rotations), learning rate.

    Attributes
    ----------
    gan_ : FittedGAN, as ADGAN's.
    rotation_net_ : the copy of the critic's body with its rotation head.
    standardise_ : dict part -> (mean, std) over the calibration images.
    transformations_ : (means, stds) of each transformation's loss over the calibration
        images, with ``standardise_transformations``.

    Examples
    --------
    >>> from adgan.detectors.adgan_plus import ADGANPlus
    >>> from adgan.data import load_digits
    >>> train, test = load_digits()
    >>> det = ADGANPlus(iterations=5, width=8, latent_dim=16, n_seeds=4, steps=2,
    ...                 rotation_steps=5).fit(train.images[train.labels == 0])
    >>> det.anomaly_score(test.images[:3]).shape
    (3,)
    """

    detector_name = "adgan-plus"
    param_constraints = {
        **GAN_CONSTRAINTS, **SEARCH_CONSTRAINTS, **PLUS_CONSTRAINTS, **COMMON_CONSTRAINTS
    }  # fmt: skip

    def __init__(
        self,
        *,
        latent_dim: int = 256,
        width: int = 64,
        objective: str = "wgan-gp",
        iterations: int = 1000,
        batch_size: int = 64,
        n_critic: int = 5,
        lr: float | None = None,
        n_seeds: int = 64,
        steps: int = 5,
        lr_z: float = 0.25,
        lr_theta: float = 5e-5,
        adapt_generator: bool = True,
        bn_stats: str = "seeds",
        kernel: str = "auto",
        max_pairs: int | None = None,
        memory_mb: float = 512.0,
        precision: str = "exact",
        ema: float = 0.999,
        rotation: bool = True,
        translation: bool = False,
        standardise_transformations: bool = False,
        reconstruction_weight: float = 1.0,
        rotation_steps: int = 1000,
        rotation_batch: int = 64,
        rotation_lr: float = 1e-3,
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int = 0,
        device: str = "auto",
        work_dir: str | None = None,
        verbose: bool = False,
    ):
        store_params(self, locals())

    def rotation_config(self) -> RotationConfig:
        return RotationConfig(
            steps=self.rotation_steps,
            batch_size=self.rotation_batch,
            lr=self.rotation_lr,
            translation=bool(self.translation),
        ).validate()

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        if not self.rotation and not self.reconstruction_weight:
            raise ConfigError(
                "reconstruction_weight: 0 with rotation=False leaves no score; give a weight "
                "above 0 or rotation=True"
            )
        if self.standardise_transformations and not self.rotation:
            raise ConfigError(
                "standardise_transformations: the transformations are the rotation network's; "
                "give rotation=True or standardise_transformations=False"
            )
        if self.translation and not self.rotation:
            raise ConfigError(
                "translation: the shifts are told by the rotation network; give "
                "rotation=True or translation=False"
            )
        super()._fit(X)
        if self.ema and float(self.ema) not in self.gan_.generator_ema:
            raise ConfigError(f"ema: the GAN keeps no moving average of decay {self.ema}")
        if self.rotation:
            self.rotation_net_ = train_rotation_net(
                self.gan_.critic,
                torch.from_numpy(X),
                self.rotation_config(),
                seed=self.random_state,
            )

    def _calibrate(self, X_cal: np.ndarray, anomalies) -> np.ndarray:
        parts = self._components(X_cal)
        if self.rotation and self.standardise_transformations:
            per = parts["rotation"]
            self.transformations_ = (per.mean(0).tolist(), np.maximum(per.std(0), 1e-6).tolist())
        self.standardise_ = {
            k: (float(v.mean()), float(max(v.std(), 1e-12)))
            for k, v in self._reduced(parts).items()
        }
        return self._combine(parts)

    @property
    def search_generator_(self) -> Generator:
        """The generator the search runs on."""
        return self.gan_.generator_ema[float(self.ema)] if self.ema else self.gan_.generator

    # -- scoring --------------------------------------------------------------------------
    def _components(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """The parts of the score per image before standardising; higher = more anomalous:
        the log of the mean final reconstruction loss (unless its weight is 0), and the
        rotation loss (per transformation, (n, T), with ``standardise_transformations``: see
        ``_reduced``)."""
        x = torch.from_numpy(X)
        out = {}
        if self.reconstruction_weight:
            out["reconstruction"] = self._reconstruction(x)
        if self.rotation:
            per = transformation_losses(self.rotation_net_, x)
            out["rotation"] = per if self.standardise_transformations else per.sum(1)
        return out

    def _reduced(self, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The rotation part as one number per image: with ``standardise_transformations``
        the sum of each transformation's loss standardised on the calibration images."""
        if not (self.rotation and self.standardise_transformations):
            return parts
        mean, std = (np.asarray(v) for v in self.transformations_)
        return {**parts, "rotation": ((parts["rotation"] - mean) / std).sum(1)}

    def _reconstruction(self, x: torch.Tensor) -> np.ndarray:
        with progress_bar(self.verbose, len(x), "ADGAN+ search", "img") as bar:
            res = latent_search(
                self.search_generator_,
                x,
                self.gan_.z0,
                self.search_config(),
                progress=bar.update,
                keep_z=False,
            )
        return np.log(np.maximum(res.loss, 1e-12))

    def _standardised(self, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each part standardised on the calibration images and weighted."""
        out = {}
        for k, v in self._reduced(parts).items():
            mean, std = self.standardise_[k]
            weight = float(self.reconstruction_weight) if k == "reconstruction" else 1.0
            out[k] = weight * ((v - mean) / std)
        return out

    def _combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """score_samples: minus the sum of the standardised, weighted parts."""
        total = np.zeros(len(next(iter(parts.values()))))
        for v in self._standardised(parts).values():
            total += v
        return -total

    def score_parts(self, X) -> dict[str, np.ndarray]:
        """The anomaly score's parts per image, each standardised on the calibration images
        and weighted ("reconstruction" unless its weight is 0, and "rotation" with
        ``rotation=True``); higher = more anomalous. Their sum, in this order, is
        ``anomaly_score(X)``."""
        check_is_fitted(self, "offset_")
        X = self._validate(X, reset=False)
        with flush_denormals():
            return self._standardised(self._components(self._features(X)))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._combine(self._components(X))

    # -- files ----------------------------------------------------------------------------
    def _get_state(self) -> dict:
        state = super()._get_state()
        state["standardise"] = json.dumps(self.standardise_)
        if self.rotation and self.standardise_transformations:
            state["transformations"] = json.dumps(self.transformations_)
        if self.rotation:
            state["rotation_net"] = {
                k: v.detach().cpu() for k, v in self.rotation_net_.state_dict().items()
            }
        return state

    def _set_state(self, state: dict) -> None:
        state = dict(state)
        standardise = state.pop("standardise")
        rot = state.pop("rotation_net", None)
        transformations = state.pop("transformations", None)
        super()._set_state(state)
        self.standardise_ = {k: tuple(v) for k, v in json.loads(standardise).items()}
        if self.rotation and self.standardise_transformations:
            if transformations is None:
                raise ConfigError(
                    "standardise_transformations: the detector file holds no per-transformation "
                    "statistics"
                )
            self.transformations_ = tuple(json.loads(transformations))
        if self.rotation:
            if rot is None:
                raise ConfigError("rotation: the detector file holds no rotation network")
            net = RotationNet(self.gan_.critic, bool(self.translation))
            load_state(net, rot, "detector file", "rotation network")
            self.rotation_net_ = net.to(resolve_device(self.device)).eval()
