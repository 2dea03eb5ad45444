"""The ADGAN detector, and Section 4.3's prior-likelihood score read from the same search.

Both run the latent search (``adgan.search``) on a trained GAN; one search gives both
scores (``search_scores``). Fitted with the same parameters on the same images, a
``PriorLikelihood`` can take its fit and its scores from an ``ADGAN``'s search
(``fit_from``, ``score_samples_from``) instead of searching again: the one-versus-all
evaluation does that when it runs both.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from adgan.detectors.gan_based import (
    COMMON_CONSTRAINTS,
    GAN_CONSTRAINTS,
    GANDetector,
    store_params,
)
from adgan.errors import ConfigError
from adgan.gan import FittedGAN
from adgan.params import COUNT, Bool, Int, Options, Real, optional
from adgan.progress import progress_bar
from adgan.search import BN_STATS, KERNELS, PRECISIONS, SearchConfig, SearchResult, latent_search

#: the search's parameters
SEARCH_CONSTRAINTS = {
    "n_seeds": COUNT,
    "steps": Int(ge=0),
    "lr_z": Real(ge=0),
    "lr_theta": Real(ge=0),
    "adapt_generator": Bool(),
    "bn_stats": Options(*BN_STATS),
    "kernel": Options(*KERNELS),
    "max_pairs": optional(COUNT),
    "memory_mb": Real(gt=0),
    "precision": Options(*PRECISIONS),
}


class SearchScores(NamedTuple):
    """Per image, from one search: the mean final loss over seeds (ADGAN's anomaly score)
    and the mean log-density under the prior of the final latents (the prior-likelihood
    score, higher = more normal)."""

    loss: np.ndarray
    log_prior: np.ndarray


def run_search(
    gan: FittedGAN,
    X: np.ndarray,
    config: SearchConfig,
    record: bool = False,
    keep_z: bool = True,
    verbose: bool = False,
) -> SearchResult:
    """The latent search of images X (validated float32) on the GAN's generator from its
    initial latents ``gan.z0``."""
    with progress_bar(verbose, len(X), "ADGAN search", "img") as bar:
        return latent_search(
            gan.generator,
            torch.from_numpy(X),
            gan.z0,
            config,
            record=record,
            progress=bar.update,
            keep_z=keep_z,
        )


def search_scores(
    gan: FittedGAN, X: np.ndarray, config: SearchConfig, verbose: bool = False
) -> SearchScores:
    """Both scores of images X from one search (the final latents themselves are not
    kept)."""
    res = run_search(gan, X, config, keep_z=False, verbose=verbose)
    return SearchScores(res.loss, res.prior_log_density())


class SearchSettings:
    """The latent search's settings, read from a detector's parameters (those of
    ``SEARCH_CONSTRAINTS``): shared by the detectors that search, ADGAN's and ADGANPlus."""

    def _n_latents(self) -> int:
        return self.n_seeds

    def search_config(self) -> SearchConfig:
        return SearchConfig(
            n_seeds=self.n_seeds,
            steps=self.steps,
            lr_z=self.lr_z,
            lr_theta=self.lr_theta,
            adapt_generator=self.adapt_generator,
            bn_stats=self.bn_stats,
            kernel=self.kernel,
            max_pairs=self.max_pairs,
            memory_mb=self.memory_mb,
            precision=self.precision,
        ).validate()


class LatentSearchDetector(SearchSettings, GANDetector):
    """A detector scoring an image by the latent search on a trained GAN: ADGAN and
    PriorLikelihood (the parameters are listed in ADGAN's docstring); ``score_samples_from``
    says which score it reads."""

    param_constraints = {**GAN_CONSTRAINTS, **SEARCH_CONSTRAINTS, **COMMON_CONSTRAINTS}

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
        n_seeds: int = 64,
        steps: int = 5,
        lr_z: float = 0.25,
        lr_theta: float = 5e-5,
        adapt_generator: bool = True,
        bn_stats: str = "running",
        kernel: str = "auto",
        max_pairs: int | None = None,
        memory_mb: float = 512.0,
        precision: str = "exact",
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int = 0,
        device: str = "auto",
        work_dir: str | None = None,
        verbose: bool = False,
    ):
        store_params(self, locals())

    # -- the search ------------------------------------------------------------------------
    def search(self, X, record: bool = False, keep_z: bool = True) -> SearchResult:
        """The latent search of images X, with per-seed losses and final latents
        (``keep_z=False``: only their prior log-density); ``record``: every step's too."""
        X = self._validate(X, reset=False)
        return run_search(self.gan_, X, self.search_config(), record, keep_z, self.verbose)

    def search_scores(self, X) -> SearchScores:
        """Both scores of images X from one search: what ADGAN and the prior-likelihood
        score read (``score_samples_from``)."""
        return search_scores(
            self.gan_, self._validate(X, reset=False), self.search_config(), self.verbose
        )

    def score_samples_from(self, scores: SearchScores) -> np.ndarray:
        """score_samples (higher = more normal) from a search's scores."""
        raise NotImplementedError

    def _calibrate(self, X_cal: np.ndarray, anomalies) -> np.ndarray:
        # both scores of the calibration images, for ``fit_from``
        self.calibration_search_ = search_scores(
            self.gan_, X_cal, self.search_config(), self.verbose
        )
        return self.score_samples_from(self.calibration_search_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.score_samples_from(
            search_scores(self.gan_, X, self.search_config(), self.verbose)
        )

    # -- one search for two scores -------------------------------------------------------
    def shares_search_with(self, other) -> bool:
        """True when ``other``, a latent-search detector, fitted on the same images, has
        searched exactly as this one would: same GAN, seeds, search and calibration
        images (all parameters equal but ``contamination`` and ``verbose``)."""
        if not isinstance(other, LatentSearchDetector):
            return False
        mine, theirs = self.get_params(deep=False), other.get_params(deep=False)
        return all(mine[k] == theirs[k] for k in mine if k not in ("contamination", "verbose"))

    def fit_from(self, other: LatentSearchDetector) -> LatentSearchDetector:
        """Fit from ``other``'s fit (see ``shares_search_with``): its GAN, and its search
        of the calibration images read as this detector's score; the same as fitting
        this detector on other's training images, without training or searching."""
        if not self.shares_search_with(other):
            raise ConfigError(f"fit_from: {type(other).__name__} searched with other settings")
        if not hasattr(other, "calibration_search_"):
            raise ConfigError("fit_from: the other detector was not fitted in this process")
        self.gan_ = other.gan_
        self.image_shape_ = other.image_shape_
        self.calibration_search_ = other.calibration_search_
        self._set_threshold(self.score_samples_from(self.calibration_search_))
        return self


class ADGAN(LatentSearchDetector):
    """Anomaly detection with generative adversarial networks (Deecke et al., 2018).

    ``fit`` trains a WGAN (DCGAN architecture) on normal images. An image's anomaly score is
    the mean over ``n_seeds`` latent searches of the final squared L2 reconstruction loss,
    each search taking ``steps`` Adam steps jointly on its latent vector (lr ``lr_z``) and on
    its own copy of the generator's parameters (lr ``lr_theta``), reset for every image
    (Algorithm 1; see ``adgan.search``).

    Parameters
    ----------
    latent_dim, width : int
        Latent size d' (paper: 256) and the DCGAN width of the networks.
    objective : {"wgan", "wgan-gp"}
        WGAN with weight clipping (the paper) or with a gradient penalty.
    iterations, batch_size, n_critic, lr : training length in generator iterations, batch
        size, critic steps per generator step, learning rate (None: the objective's default).
    n_seeds, steps, lr_z, lr_theta : the search (paper: 64, 5, 0.25, 5e-5; Adam betas 0.5, 0.999).
    adapt_generator : bool
        Adapt theta during the search (the paper does); False searches z alone.
    bn_stats : {"running", "seeds"}
        BatchNorm statistics during the search: the running estimates from training (eval
        mode, seeds independent) or the batch statistics of each image's seeds (a generator
        in training mode with the seeds as its batch). The paper does not say.
    kernel, max_pairs, memory_mb : implementation of the search and its chunking.
    precision : how the search stores each seed's copy of theta and its Adam moments
        (``adgan.search.PRECISIONS``); "exact": in float32, as the plain loop does;
        "mixed": on CPU with the compiled kernel, the convolutions' per-seed change and
        moments in bfloat16 beside the shared float32 weights (``adgan.search.mixed``).
    contamination : float
        Fraction of the calibration images flagged as anomalous (default 0.05): ``offset_``
        is this quantile of their ``score_samples``, so that fraction falls below it (their
        anomaly score above ``-offset_``; ``predict`` gives -1).
    calibration : float or int
        Fraction (or number) of the training images held out of GAN training to set the
        threshold (default 0.1); 0 calibrates on the training images.
    random_state : int
        Seeds training and the initial latent vectors; equal seeds give equal scores.
    device : str
        "auto" (CUDA when present), "cpu" or "cuda[:N]".
    work_dir : str or None
        Folder for the training checkpoint, loss log and samples; an interrupted fit resumes
        there, and a finished one is reused.
    verbose : bool
        Progress bars for training and scoring.

    Attributes
    ----------
    gan_ : FittedGAN
        The trained GAN: ``generator_``, ``critic_``, and ``z0_`` (n_seeds, latent_dim), the
        initial latent vectors shared by all images.
    offset_ : float, threshold on score_samples.

    References
    ----------
    L. Deecke, R. Vandermeulen, L. Ruff, S. Mandt, M. Kloft. Image Anomaly Detection with
    Generative Adversarial Networks. ECML-PKDD 2018.

    Examples
    --------
    >>> from adgan import ADGAN
    >>> from adgan.data import load_digits
    >>> train, test = load_digits()
    >>> det = ADGAN(iterations=5, width=8, latent_dim=16, n_seeds=4, steps=2).fit(
    ...     train.images[train.labels == 0])
    >>> det.anomaly_score(test.images[:3]).shape
    (3,)
    """

    detector_name = "adgan"

    def score_samples_from(self, scores: SearchScores) -> np.ndarray:
        return -scores.loss


class PriorLikelihood(LatentSearchDetector):
    """Section 4.3's alternative: the mean log-density under p_z of ADGAN's final latent
    vectors. score_samples = that mean (higher = more normal). Parameters as ``ADGAN``'s."""

    detector_name = "prior"

    def score_samples_from(self, scores: SearchScores) -> np.ndarray:
        return scores.log_prior
