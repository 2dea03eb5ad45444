"""The deep baselines of Section 4.2: a convolutional autoencoder (DCAE) scored by its
reconstruction loss and a variational autoencoder (VAE) scored by its ELBO."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import torch
from torch import nn

from adgan.base import BaseDetector, resolve_device
from adgan.errors import DataError, TrainingDiverged
from adgan.files import load_state
from adgan.nets.autoencoders import AEConfig, ConvAutoencoder, ConvVAE
from adgan.params import (
    CALIBRATION,
    CONTAMINATION,
    COUNT,
    DEVICE,
    RATE,
    SEED,
    Bool,
    Int,
    Real,
    optional,
)
from adgan.progress import progress_bar
from adgan.torch_utils import seeded

log = logging.getLogger(__name__)

#: images per scoring batch (the VAE decodes n_elbo_samples times as many)
SCORE_BATCH = 256


class _ConvAEDetector(BaseDetector):
    """Training, batched scoring and persistence shared by DCAE and VAE."""

    _variational = False
    param_constraints = {
        "latent_dim": COUNT,
        "width": COUNT,
        "epochs": Int(ge=0),
        "batch_size": COUNT,
        "lr": RATE,
        "contamination": CONTAMINATION,
        "calibration": CALIBRATION,
        "random_state": SEED,
        "device": DEVICE,
        "verbose": Bool(),
    }

    # -- configuration ------------------------------------------------------------------
    def _arch(self, shape) -> AEConfig:
        c, h, w = shape
        if h != w:
            raise DataError(f"X: expected square images, got {h}x{w}")
        return AEConfig(
            image_size=h,
            channels=c,
            latent_dim=self.latent_dim,
            width=self.width,
            variational=self._variational,
            decoder_std=getattr(self, "decoder_std", None),
        ).validate()

    @staticmethod
    def _build(arch: AEConfig) -> nn.Module:
        return ConvVAE(arch) if arch.variational else ConvAutoencoder(arch)

    def _loss(self, net: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Per-image training loss."""
        raise NotImplementedError

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image score_samples (higher = more normal), eval mode, no gradients."""
        raise NotImplementedError

    # -- fitting ------------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        dev = resolve_device(self.device)
        arch = self._arch(X.shape[1:])
        seed = int(self.random_state)
        with seeded(seed):  # the initialisation; the caller's random state is left alone
            net = self._build(arch)
        net.to(dev).train()
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=self.lr)
        rng = np.random.default_rng(seed)
        gen = torch.Generator(device=dev).manual_seed(seed + 1)
        data = torch.from_numpy(np.ascontiguousarray(X)).to(dev)
        bs = min(int(self.batch_size), len(data))
        steps = len(data) // bs  # the last partial batch is dropped: reshuffled each epoch
        history: list[float] = []
        desc = f"train {type(self).__name__}"
        with progress_bar(self.verbose, int(self.epochs), desc, "epoch") as bar:
            for epoch in range(int(self.epochs)):
                perm = torch.from_numpy(rng.permutation(len(data))).to(dev)
                total = torch.zeros((), device=dev)
                for s in range(steps):
                    loss = self._loss(net, data[perm[s * bs : (s + 1) * bs]], gen).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.detach()
                mean = float(total) / steps
                if not math.isfinite(mean):
                    raise TrainingDiverged(
                        f"{type(self).__name__}: the training loss became {mean} in epoch {epoch}; "
                        "try a smaller lr"
                    )
                history.append(mean)
                log.debug("%s epoch %d loss %.6g", type(self).__name__, epoch, mean)
                bar.set_postfix(loss=f"{mean:.4g}")
                bar.update(1)
        self.net_ = net.eval()
        self.arch_ = arch
        self.train_history_ = history

    # -- scoring ----------------------------------------------------------------------------
    def _score(self, X: np.ndarray) -> np.ndarray:
        dev = next(self.net_.parameters()).device
        self.net_.eval()  # batch norm with its running statistics: scores never mix images
        out = []
        with torch.no_grad():
            for i in range(0, len(X), SCORE_BATCH):
                x = torch.from_numpy(np.ascontiguousarray(X[i : i + SCORE_BATCH])).to(dev)
                out.append(self._score_batch(x).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    # -- persistence --------------------------------------------------------------------------
    def _get_state(self) -> dict:
        return {
            "arch": json.dumps(self.arch_.to_dict()),
            "net": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()},
            "train_history": torch.tensor(self.train_history_, dtype=torch.float64),
        }

    def _set_state(self, state: dict) -> None:
        arch = AEConfig(**json.loads(state["arch"])).validate()
        net = self._build(arch)
        load_state(net, state["net"], "detector file", type(self).__name__)
        self.arch_ = arch
        self.net_ = net.to(resolve_device(self.device)).eval()
        self.train_history_ = state["train_history"].tolist()


class DCAE(_ConvAEDetector):
    """Deep convolutional autoencoder scored by its reconstruction loss.

    A DCGAN-like encoder (4x4 stride-2 convolutions, batch norm and ReLU) maps an image to
    a ``latent_dim`` code, the DCGAN generator maps it back; both are trained with Adam on
    the squared L2 reconstruction loss of normal images. score_samples = -||x - x_hat||^2
    summed over pixels (a high loss = anomalous).

    Parameters
    ----------
    latent_dim : int
        Size of the code (the bottleneck); small enough that anomalies reconstruct badly.
    width : int
        Channels of the widest-resolution hidden layer, as DCGAN's ngf / ndf.
    epochs, batch_size, lr : int, int, float
        Adam (betas 0.9, 0.999) for ``epochs`` passes over the training images; the last
        partial batch of each shuffled pass is dropped.
    contamination : float
        Fraction of the calibration images flagged as anomalous (default 0.05): ``offset_``
        is this quantile of their ``score_samples``, so that fraction falls below it (their
        anomaly score above ``-offset_``; ``predict`` gives -1).
    calibration : float or int
        Fraction (or number) of the training images held out of training to set the
        threshold (default 0.1); 0 calibrates on the training images.
    random_state : int
        Seeds the initialisation and the batches: equal seeds give equal scores on the CPU
        (CUDA convolutions need not be bit-for-bit reproducible).
    device : str
        "auto" (CUDA when present), "cpu" or "cuda[:N]".
    verbose : bool
        A progress bar over the epochs.

    Attributes
    ----------
    net_ : ConvAutoencoder
        The trained network, in eval mode.
    arch_ : AEConfig
        Its architecture.
    train_history_ : list of float
        Mean training loss of each epoch.
    offset_ : float
        Threshold on score_samples.

    References
    ----------
    L. Deecke et al. Image Anomaly Detection with Generative Adversarial Networks.
    ECML-PKDD 2018, Section 4.2. A. Radford, L. Metz, S. Chintala. Unsupervised
    representation learning with deep convolutional GANs. ICLR 2016 (the architecture).

    Examples
    --------
    >>> import numpy as np
    >>> from adgan.detectors.autoencoder import DCAE
    >>> X = np.zeros((16, 1, 8, 8), np.float32)
    >>> DCAE(epochs=2, width=4, latent_dim=2, device="cpu").fit(X).anomaly_score(X[:2]).shape
    (2,)
    """

    def __init__(
        self,
        *,
        latent_dim: int = 32,
        width: int = 64,
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 1e-3,
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ):
        self.latent_dim = latent_dim
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.contamination = contamination
        self.calibration = calibration
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    detector_name = "dcae"

    def _loss(self, net, x, gen):
        return ((net(x) - x) ** 2).flatten(1).sum(1)

    def _score_batch(self, x):
        return -((self.net_(x) - x) ** 2).flatten(1).sum(1)


class VAE(_ConvAEDetector):
    """Variational autoencoder scored by its evidence lower bound (ELBO).

    Encoder and decoder as in :class:`DCAE`; the encoder gives the mean and log-variance of
    q(z|x), the prior is N(0, I). The likelihood p(x|z) is Gaussian, N(decoder(z),
    sigma^2 I), with one scalar sigma learned with the networks (``decoder_std=None``) or
    fixed: a Bernoulli likelihood does not fit pixels in [-1, 1], and a learned sigma
    weighs reconstruction against the KL term without a hand-set constant (the
    "sigma-VAE" of Rybkin et al. 2021). Training maximises the ELBO with one
    reparameterised sample per image.

    score_samples = ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) (higher = more normal;
    the anomaly score is the negative ELBO), the KL in closed form and the expectation
    estimated with ``n_elbo_samples`` draws. The draws are fixed at fit (``eps_``, shared
    by all images) so a score depends only on the model and the image, and scoring is
    deterministic.

    Parameters
    ----------
    latent_dim, width, epochs, batch_size, lr, contamination, calibration, random_state,
    device, verbose
        As for :class:`DCAE`.
    n_elbo_samples : int
        Monte Carlo draws of z per image for the ELBO's expectation when scoring.
    decoder_std : float or None
        The likelihood's standard deviation sigma; None learns it.

    Attributes
    ----------
    net_ : ConvVAE
        The trained network, in eval mode.
    eps_ : torch.Tensor (n_elbo_samples, latent_dim)
        The standard-normal draws used for every image's ELBO.
    arch_, train_history_, offset_
        As for :class:`DCAE`.

    References
    ----------
    D. P. Kingma, M. Welling. Auto-encoding variational Bayes. ICLR 2014.
    O. Rybkin, K. Daniilidis, S. Levine. Simple and effective VAE training with calibrated
    decoders. ICML 2021. L. Deecke et al. ECML-PKDD 2018, Section 4.2.

    Examples
    --------
    >>> import numpy as np
    >>> from adgan.detectors.autoencoder import VAE
    >>> X = np.zeros((16, 1, 8, 8), np.float32)
    >>> VAE(epochs=2, width=4, latent_dim=2, device="cpu").fit(X).anomaly_score(X[:2]).shape
    (2,)
    """

    _variational = True
    detector_name = "vae"
    param_constraints = {
        **_ConvAEDetector.param_constraints,
        "n_elbo_samples": COUNT,
        "decoder_std": optional(Real(gt=0)),
    }

    def __init__(
        self,
        *,
        latent_dim: int = 32,
        width: int = 64,
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 1e-3,
        n_elbo_samples: int = 10,
        decoder_std: float | None = None,
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int = 0,
        device: str = "auto",
        verbose: bool = False,
    ):
        self.latent_dim = latent_dim
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_elbo_samples = n_elbo_samples
        self.decoder_std = decoder_std
        self.contamination = contamination
        self.calibration = calibration
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _fit(self, X: np.ndarray) -> None:
        super()._fit(X)
        g = torch.Generator().manual_seed(int(self.random_state) + 2)
        self.eps_ = torch.randn(int(self.n_elbo_samples), self.latent_dim, generator=g)

    def _loss(self, net, x, gen):
        eps = torch.randn(len(x), 1, self.latent_dim, generator=gen, device=x.device)
        return net.neg_elbo(x, eps)

    def _score_batch(self, x):
        eps = self.eps_.to(x.device)
        # decode at most SCORE_BATCH latent vectors at once
        step = max(1, SCORE_BATCH // len(eps))
        return torch.cat(
            [-self.net_.neg_elbo(x[i : i + step], eps) for i in range(0, len(x), step)]
        )

    def _get_state(self) -> dict:
        return super()._get_state() | {"eps": self.eps_.cpu()}

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        self.eps_ = state["eps"]
