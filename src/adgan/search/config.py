"""The search's settings (``SearchConfig``, the paper's by default) and its outcome
(``SearchResult``): the contract every implementation in this package keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from adgan.params import Bool, Int, Options, Real, check_params, optional

KERNELS = ("auto", "fused", "bmm", "loop")
BN_STATS = ("running", "seeds")
#: how the per-pair search state is stored: "exact" keeps every copy of theta and its Adam
#: moments in the generator's own float type; "mixed" (adgan.search.mixed) keeps the
#: compiled convolutions' copies as the shared weights plus a bfloat16 change, and their
#: moments in bfloat16
PRECISIONS = ("exact", "mixed")


@dataclass(frozen=True)
class SearchConfig:
    """Hyper-parameters of the search; the defaults are the paper's (Section 4.2).

    n_seeds, steps, lr_z, lr_theta, betas, eps : the search (Algorithm 1): ``steps`` Adam
        steps (betas, eps) from each of ``n_seeds`` initial latents, on z (``lr_z``) and
        on each seed's own copy of the generator's parameters (``lr_theta``).
    adapt_generator : adapt theta (the paper does); False searches z alone.
    bn_stats : BatchNorm statistics during the search: "running" (the estimates kept from
        training; each seed independent) or "seeds" (the batch statistics of an image's
        seeds, as a generator left in training mode computes them when those seeds form
        its batch; a chunk then holds whole images, at least one image's seeds whatever
        memory_mb says).
    kernel : "fused" ("auto"), "bmm" or "loop" (the reference): see the package docstring.
    max_pairs, memory_mb : (image, seed) pairs in flight at once; None: as many as
        ``memory_mb`` of per-pair state allows.
    workers : CPU threads of the fused kernel (at most; the memory budget may allow fewer),
        each running its own chunks with its share of torch's threads; None: one per torch
        thread, while the budget gives each at least 8 pairs. Other kernels and devices use
        torch's own threading.
    native : the fused kernel on CPU runs each layer's backward products and Adam step in
        one compiled pass (``adgan.search.native``, built on first use with the machine's C
        compiler) where it is available and measured faster: the whole search 1.22 to 1.24
        times as fast as on torch's operations alone, on 2 cores (docs/performance.md).
        False, or no compiler, or ``ADGAN_NATIVE=0``: torch's operations alone. Same
        scores to float rounding.
    precision : how the per-pair state is stored (``PRECISIONS``); "exact": in the
        generator's float type, as the reference loop does; "mixed": for the convolutions
        the compiled kernel runs on CPU, each pair's weights as the shared float32 weights
        plus its own change, that change and the Adam moments in bfloat16 (half the bytes
        to move per step; ``adgan.search.mixed``, docs/performance.md); elsewhere as
        "exact".
    """

    n_seeds: int = 64
    steps: int = 5
    lr_z: float = 0.25
    lr_theta: float = 5e-5
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-8
    adapt_generator: bool = True
    kernel: str = "auto"
    max_pairs: int | None = None
    memory_mb: float = 512.0
    workers: int | None = None
    bn_stats: str = "running"
    native: bool = True
    precision: str = "exact"

    param_constraints: ClassVar[dict] = {
        "n_seeds": Int(ge=1),
        "steps": Int(ge=0),
        "lr_z": Real(ge=0),
        "lr_theta": Real(ge=0),
        "eps": Real(ge=0),
        "adapt_generator": Bool(),
        "kernel": Options(*KERNELS),
        "max_pairs": optional(Int(ge=1)),
        "memory_mb": Real(gt=0),
        "workers": optional(Int(ge=1)),
        "bn_stats": Options(*BN_STATS),
        "native": Bool(),
        "precision": Options(*PRECISIONS),
    }

    def validate(self) -> SearchConfig:
        """ConfigError naming the first setting out of its range; else self."""
        check_params(self)
        return self


@dataclass
class SearchResult:
    """Per-image outcome. ``seed_losses`` is (n, n_seeds); ``z`` the final latents."""

    seed_losses: np.ndarray
    z: np.ndarray | None = None
    # (n, n_seeds): log N(z_j,k; 0, I) per seed, kept even when z is not
    seed_log_prior: np.ndarray | None = None
    # (steps + 1, n, n_seeds, latent) and (steps + 1, n, n_seeds), when record=True
    z_path: np.ndarray | None = None
    loss_path: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def loss(self) -> np.ndarray:
        """Mean over seeds of the final loss: ADGAN's anomaly score."""
        return self.seed_losses.mean(axis=1)

    def prior_log_density(self) -> np.ndarray:
        """Mean over seeds of log N(z_j,k; 0, I): Section 4.3's prior-likelihood score."""
        logp = self.seed_log_prior if self.seed_log_prior is not None else log_prior(self.z)
        return logp.mean(axis=1)


def log_prior(z: np.ndarray) -> np.ndarray:
    """log N(z; 0, I) over the last axis."""
    d = z.shape[-1]
    return -0.5 * (z.astype(np.float64) ** 2).sum(-1) - 0.5 * d * math.log(2 * math.pi)
