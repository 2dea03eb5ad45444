"""The ADGAN detector and the two alternative scores of Section 4.3 that share its GAN."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from adgan._cache import Recent, digest
from adgan.base import BaseDetector, resolve_device
from adgan.files import load_state
from adgan.nets.dcgan import Critic, DCGANConfig, Generator
from adgan.search import SearchConfig, SearchResult, latent_search
from adgan.training import TrainConfig, train_wgan

log = logging.getLogger(__name__)

# per-image outcomes of recent searches, keyed by a digest of everything they depend on:
# ADGAN and the prior-likelihood score on the same GAN and images then share one search
_RECENT = Recent(max_items=4)


class ADGAN(BaseDetector):
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
    contamination : float
        Fraction of calibration images above the threshold ``offset_``.
    calibration : float or int
        Fraction (or number) of the training images held out of GAN training to set the
        threshold; 0 calibrates on the training images.
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
    generator_, critic_ : the trained networks.
    z0_ : torch.Tensor (n_seeds, latent_dim), the initial latent vectors shared by all images.
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
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int = 0,
        device: str = "auto",
        work_dir: str | None = None,
        verbose: bool = False,
    ):
        self.latent_dim = latent_dim
        self.width = width
        self.objective = objective
        self.iterations = iterations
        self.batch_size = batch_size
        self.n_critic = n_critic
        self.lr = lr
        self.n_seeds = n_seeds
        self.steps = steps
        self.lr_z = lr_z
        self.lr_theta = lr_theta
        self.adapt_generator = adapt_generator
        self.bn_stats = bn_stats
        self.kernel = kernel
        self.max_pairs = max_pairs
        self.memory_mb = memory_mb
        self.contamination = contamination
        self.calibration = calibration
        self.random_state = random_state
        self.device = device
        self.work_dir = work_dir
        self.verbose = verbose

    # -- configuration ------------------------------------------------------------------
    def _arch(self, shape) -> DCGANConfig:
        c, h, w = shape
        if h != w:
            from adgan.errors import DataError

            raise DataError(f"X: expected square images, got {h}x{w}")
        norm = "batch" if self.objective == "wgan" else "layer"
        return DCGANConfig(
            image_size=h, channels=c, latent_dim=self.latent_dim, width=self.width, critic_norm=norm
        )

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
        ).validate()

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            objective=self.objective,
            iterations=self.iterations,
            batch_size=self.batch_size,
            n_critic=self.n_critic,
            lr=self.lr,
        ).validate()

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        self.search_config()
        dev = resolve_device(self.device)
        arch = self._arch(X.shape[1:])
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.iterations, desc="train WGAN", unit="it")

        def progress(it, rec):
            if bar is not None:
                bar.n = it
                bar.set_postfix(W=f"{rec['wasserstein_estimate']:.3g}", refresh=False)
                bar.refresh()

        try:
            gen, critic, history = train_wgan(
                torch.from_numpy(X),
                arch,
                self.train_config(),
                seed=self.random_state,
                device=dev,
                out_dir=self.work_dir,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
        self.generator_, self.critic_ = gen, critic
        self.train_history_ = history
        g = torch.Generator().manual_seed(int(self.random_state) + 7919)
        self.z0_ = torch.randn(self.n_seeds, self.latent_dim, generator=g)

    # -- scoring --------------------------------------------------------------------------
    def search(self, X, record: bool = False, keep_z: bool = True) -> SearchResult:
        """Run the latent search on validated images; exposes per-seed losses and latents
        (``keep_z=False``: not the final latents, only their prior log-density)."""
        X = torch.from_numpy(self._validate(X, reset=False))
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(X), desc="ADGAN search", unit="img")
        try:
            return latent_search(
                self.generator_,
                X,
                self.z0_,
                self.search_config(),
                record=record,
                progress=bar.update if bar is not None else None,
                keep_z=keep_z,
            )
        finally:
            if bar is not None:
                bar.close()

    def _search_summary(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean final loss, mean prior log-density of the final latents) per image, from
        the search or, when the same generator, seeds, settings and images were searched a
        moment ago, from that search (the search is deterministic)."""
        Xv = self._validate(X, reset=False)
        dev = str(next(self.generator_.parameters()).device)
        key = digest(self.generator_.state_dict(), self.z0_, self.search_config(), dev, Xv)
        out = _RECENT.get(key)
        if out is None:
            res = self.search(Xv, keep_z=False)
            out = (res.loss, res.prior_log_density())
            _RECENT.put(key, out, 16 * len(Xv))
        return out

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self._search_summary(X)[0]

    # -- persistence ----------------------------------------------------------------------
    def _get_state(self) -> dict:
        return {
            "arch": json.dumps(self.generator_.config.to_dict()),
            "generator": {k: v.cpu() for k, v in self.generator_.state_dict().items()},
            "critic": {k: v.cpu() for k, v in self.critic_.state_dict().items()},
            "z0": self.z0_.cpu(),
        }

    def _set_state(self, state: dict) -> None:
        arch = DCGANConfig(**json.loads(state["arch"]))
        dev = resolve_device(self.device)
        gen, critic = Generator(arch), Critic(arch)
        load_state(gen, state["generator"], "detector file", "generator")
        load_state(critic, state["critic"], "detector file", "critic")
        self.generator_, self.critic_ = gen.to(dev).eval(), critic.to(dev).eval()
        self.z0_ = state["z0"]


class PriorLikelihood(ADGAN):
    """Section 4.3's alternative: the mean log-density under p_z of ADGAN's final latent
    vectors. score_samples = that mean (higher = more normal)."""

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._search_summary(X)[1]


class DiscriminatorScore(ADGAN):
    """Section 4.3's alternative: the trained critic's output (higher = more real = normal)."""

    def _score(self, X: np.ndarray) -> np.ndarray:
        dev = next(self.critic_.parameters()).device
        out = []
        with torch.no_grad():
            for i in range(0, len(X), 512):
                out.append(self.critic_(torch.from_numpy(X[i : i + 512]).to(dev)).cpu().numpy())
        return np.concatenate(out).astype(np.float64)
