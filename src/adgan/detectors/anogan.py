"""AnoGAN (Schlegl et al., 2017) on the same trained generator and critic as ADGAN."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from adgan.base import calibration_count
from adgan.detectors.gan_based import (
    COMMON_CONSTRAINTS,
    GAN_CONSTRAINTS,
    GANDetector,
    store_params,
)
from adgan.errors import ConfigError
from adgan.params import COUNT, Either, Real, Seq, Whole

log = logging.getLogger(__name__)

#: AnoGAN starts every image from the first of the initial latents drawn for the paper's
#: 64 seeds: where ADGAN's first seed starts with the paper's settings
PAPER_SEEDS = 64


class AnoGAN(GANDetector):
    """AnoGAN's score on ADGAN's WGAN: search z alone (the generator stays fixed) to minimise

        (1 - lambda) * ||x - g(z)||_1 + lambda * ||f(x) - f(g(z))||_1,

    with f the critic's last hidden layer (AnoGAN's feature-matching "discrimination loss"),
    lambda = 0.1 and Gamma = 500 steps as in Schlegl et al.; the anomaly score is that loss
    at the end. All images are searched at once, each with its own z (one Adam over the
    stacked latents is one Adam per image, Adam being element-wise); one seed per image as
    in AnoGAN, the same for every image (so a score depends on the image alone): the first
    of the initial latents the GAN draws for the paper's 64 seeds, where ADGAN's first seed
    starts with the paper's settings. Adam's learning rate (0.01 here) is our choice: the
    paper does not give one.

    Number of steps: ``anogan_steps`` is one number, or candidates to choose among on a
    labelled holdout drawn from the training data, as the classic methods choose their PCA
    dimension. ``fit(X, y)`` with labels y (1: normal, -1: anomalous, as ``predict`` returns
    them) trains the GAN on the normal images less the ``calibration`` images held out of
    training, then searches those held-out normal images and up to ``anogan_holdout_max``
    of the anomalous ones (a seeded draw) once, for the largest candidate, reading the loss
    at every candidate step on the way (a run stopped at step s is the same run up to s),
    and keeps the candidate of best ROC-AUC (the smallest on ties). Without anomalous
    labels the largest candidate is used. Why: the latent vector is unconstrained, so a long
    search learns to reconstruct anomalous images too, and where that begins depends on the
    generator (measured on MNIST: the best step count differed between classes).

    Parameters
    ----------
    anogan_steps : int or sequence of int
        Gamma, the number of latent updates (500), or candidates for it.
    anogan_lr : float
        Adam's learning rate on z.
    anogan_lambda : float
        Weight of the feature-matching loss (0.1).
    anogan_batch : int
        Images searched at once.
    anogan_holdout_max : int
        Anomalous images used to choose the number of steps, at most.
    latent_dim, width, objective, iterations, batch_size, n_critic, lr, contamination,
    calibration, random_state, device, work_dir, verbose
        As for ADGAN: the GAN, its training, the threshold and where it runs.

    Attributes
    ----------
    anogan_steps_ : int
        The number of steps used.
    anogan_step_scores_ : dict
        Holdout ROC-AUC of each candidate; only when chosen on labels.

    References
    ----------
    T. Schlegl, P. Seeboeck, S. Waldstein, U. Schmidt-Erfurth, G. Langs. Unsupervised Anomaly
    Detection with Generative Adversarial Networks to Guide Marker Discovery. IPMI 2017.
    """

    detector_name = "anogan"
    param_constraints = {
        **GAN_CONSTRAINTS,
        "anogan_steps": Either(Whole(ge=0), Seq(Whole(ge=0))),
        "anogan_lr": Real(ge=0),
        "anogan_lambda": Real(ge=0, le=1),
        "anogan_batch": COUNT,
        "anogan_holdout_max": COUNT,
        **COMMON_CONSTRAINTS,
    }
    selects_on_labels = True
    labels_choose = "AnoGAN's number of steps"

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
        anogan_steps: int | tuple[int, ...] = 500,
        anogan_lr: float = 0.01,
        anogan_lambda: float = 0.1,
        anogan_batch: int = 512,
        anogan_holdout_max: int = 300,
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int = 0,
        device: str = "auto",
        work_dir: str | None = None,
        verbose: bool = False,
    ):
        store_params(self, locals())

    def _n_latents(self) -> int:
        return PAPER_SEEDS

    def _step_candidates(self) -> list[int]:
        raw = self.anogan_steps
        values = [raw] if np.ndim(raw) == 0 else list(raw)
        return sorted({int(v) for v in values})

    def _select(self, X: np.ndarray, labels: np.ndarray | None) -> None:
        self.__dict__.pop("anogan_step_scores_", None)
        n_normal = len(X) if labels is None else int((labels == 1).sum())
        choosing = labels is not None and (labels == -1).any()
        if choosing and len(self._step_candidates()) > 1:
            if calibration_count(n_normal, self.calibration) <= 0:
                raise ConfigError(
                    "calibration: choosing among several anogan_steps needs normal images "
                    "held out of the GAN's training; set calibration > 0"
                )

    def _calibrate(self, cal: np.ndarray, anomalies: np.ndarray | None) -> np.ndarray:
        """Choose the number of steps on the calibration images and ``anomalies`` (see the
        class docstring); the calibration images' scores at the chosen number."""
        steps = self._step_candidates()
        if len(steps) > 1 and anomalies is not None:
            from sklearn.metrics import roc_auc_score

            n_a = min(len(anomalies), int(self.anogan_holdout_max))
            rng = np.random.default_rng([int(self.random_state or 0), 3])
            pick = np.sort(rng.choice(len(anomalies), n_a, replace=False))
            scores = self._search(np.concatenate([cal, anomalies[pick]]), steps)
            normal = np.r_[np.ones(len(cal), bool), np.zeros(n_a, bool)]
            aucs = {s: float(roc_auc_score(normal, scores[s])) for s in steps}
            chosen = max(aucs, key=aucs.get)  # the first maximum: the fewest steps
            log.info("AnoGAN: %d steps (holdout ROC-AUC %s)", chosen, aucs)
            self.anogan_step_scores_ = aucs
            cal_scores = scores[chosen][: len(cal)]
        else:
            chosen = steps[-1]
            cal_scores = self._search(cal, [chosen])[chosen]
        self.anogan_steps_ = int(chosen)
        return cal_scores

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._search(X, [self.anogan_steps_])[self.anogan_steps_]

    def _search(self, X: np.ndarray, steps: list[int]) -> dict[int, np.ndarray]:
        """score_samples (minus the loss) after each number of steps in ``steps``."""
        parts = [
            self._search_batch(X[i : i + self.anogan_batch], steps)
            for i in range(0, len(X), self.anogan_batch)
        ]
        return {s: np.concatenate([p[s] for p in parts]) for s in steps}

    def _search_batch(self, X: np.ndarray, steps: list[int]) -> dict[int, np.ndarray]:
        gen, critic = self.gan_.generator.eval(), self.gan_.critic.eval()
        dev = next(gen.parameters()).device
        x = torch.from_numpy(X).to(dev)
        # the same initial latent (ADGAN's first seed) for every image: a score depends on
        # the image alone
        z = self.gan_.z0[:1].repeat(len(X), 1).to(dev).requires_grad_(True)  # (n, latent)
        opt = torch.optim.Adam([z], lr=self.anogan_lr)
        lam = self.anogan_lambda
        wanted, last = set(steps), max(steps)
        out = {}
        for p in list(gen.parameters()) + list(critic.parameters()):
            p.requires_grad_(False)
        with torch.no_grad():
            fx = critic.features(x)
        try:
            for step in range(last + 1):
                gz = gen(z)
                loss = (1 - lam) * (x - gz).abs().flatten(1).sum(1) + lam * (
                    fx - critic.features(gz)
                ).abs().flatten(1).sum(1)  # (n,)
                if step in wanted:
                    out[step] = -loss.detach().cpu().numpy().astype(np.float64)
                if step == last:
                    break
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()  # per-image terms: each z gets its own gradient
                opt.step()
        finally:
            for p in list(gen.parameters()) + list(critic.parameters()):
                p.requires_grad_(True)
        return out

    # -- persistence ----------------------------------------------------------------------
    def _get_state(self) -> dict:
        state = super()._get_state()
        state["anogan_steps_"] = int(self.anogan_steps_)
        if hasattr(self, "anogan_step_scores_"):
            state["anogan_step_scores_"] = json.dumps(self.anogan_step_scores_)
        return state

    def _set_state(self, state: dict) -> None:
        super()._set_state(state)
        if "anogan_steps_" in state:
            self.anogan_steps_ = int(state["anogan_steps_"])
        else:  # files written before the number of steps could be chosen
            self.anogan_steps_ = self._step_candidates()[-1]
        if "anogan_step_scores_" in state:
            scores = json.loads(state["anogan_step_scores_"])
            self.anogan_step_scores_ = {int(k): float(v) for k, v in scores.items()}
