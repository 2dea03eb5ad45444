"""AnoGAN (Schlegl et al., 2017) on the same trained generator and critic as ADGAN."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from adgan.base import as_images, check_contamination, outlier_labels, split_calibration
from adgan.detectors.adgan import ADGAN
from adgan.errors import ConfigError
from adgan.torch_utils import flush_denormals

log = logging.getLogger(__name__)


class AnoGAN(ADGAN):
    """AnoGAN's score on ADGAN's WGAN: search z alone (the generator stays fixed) to minimise

        (1 - lambda) * ||x - g(z)||_1 + lambda * ||f(x) - f(g(z))||_1,

    with f the critic's last hidden layer (AnoGAN's feature-matching "discrimination loss"),
    lambda = 0.1 and Gamma = 500 steps as in Schlegl et al.; the anomaly score is that loss
    at the end. All images are searched at once, each with its own z (one Adam over the
    stacked latents is one Adam per image, Adam being element-wise); one seed per image as
    in AnoGAN. Adam's learning rate (0.01 here) is our choice: the paper does not give one.

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
    **kwargs
        Every ADGAN parameter (the GAN and its training).

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

    _extra = ("anogan_steps", "anogan_lr", "anogan_lambda", "anogan_batch", "anogan_holdout_max")
    #: example values of each type a parameter accepts beyond its default's (for presets)
    param_types = {"anogan_steps": (500, [500])}
    #: ``fit`` takes labels (1 normal, -1 anomalous) of training images to choose a setting
    selects_on_labels = True

    def __init__(
        self,
        *,
        anogan_steps: int | tuple[int, ...] = 500,
        anogan_lr: float = 0.01,
        anogan_lambda: float = 0.1,
        anogan_batch: int = 512,
        anogan_holdout_max: int = 300,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.anogan_steps = anogan_steps
        self.anogan_lr = anogan_lr
        self.anogan_lambda = anogan_lambda
        self.anogan_batch = anogan_batch
        self.anogan_holdout_max = anogan_holdout_max

    @classmethod
    def _get_param_names(cls):
        return sorted(set(ADGAN._get_param_names()) | set(cls._extra))

    def _step_candidates(self) -> list[int]:
        raw = self.anogan_steps
        values = [raw] if np.ndim(raw) == 0 else list(raw)

        def whole(v) -> bool:
            return (
                not isinstance(v, bool)
                and isinstance(v, (int, float, np.integer, np.floating))
                and float(v).is_integer()
                and v >= 0
            )

        if not values or not all(whole(v) for v in values):
            raise ConfigError(
                f"anogan_steps: expected a number of steps >= 0 or a list of them, got {raw!r}"
            )
        return sorted({int(v) for v in values})

    def fit(self, X, y=None):
        """Train the GAN on the normal images of X (all of X without labels) and, given
        labels with anomalies and several ``anogan_steps``, choose the number of steps; see
        the class docstring."""
        check_contamination(self.contamination)
        steps = self._step_candidates()
        if isinstance(self.anogan_holdout_max, bool) or not (
            isinstance(self.anogan_holdout_max, (int, np.integer)) and self.anogan_holdout_max >= 1
        ):
            raise ConfigError(
                f"anogan_holdout_max: expected a number of images >= 1, "
                f"got {self.anogan_holdout_max!r}"
            )
        X = as_images(X)
        labels = outlier_labels(y, len(X), "AnoGAN's number of steps")
        anomalies = None
        if labels is not None and (labels == -1).any():
            anomalies, X = X[labels == -1], X[labels == 1]
        with flush_denormals():
            X = self._validate(X, reset=True)
            fit_idx, cal_idx = split_calibration(len(X), self.calibration, self.random_state)
            held_out = len(fit_idx) + len(cal_idx) == len(X)  # calibration=0: none held out
            if len(steps) > 1 and anomalies is not None and not held_out:
                raise ConfigError(
                    "calibration: choosing among several anogan_steps needs normal images "
                    "held out of the GAN's training; set calibration > 0"
                )
            self._fit(X[fit_idx])
            cal = X[cal_idx]
            self.__dict__.pop("anogan_step_scores_", None)
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
            self._set_threshold(cal_scores)
        return self

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
        gen, critic = self.generator_.eval(), self.critic_.eval()
        dev = next(gen.parameters()).device
        x = torch.from_numpy(X).to(dev)
        # the same initial latent (ADGAN's first seed) for every image: a score depends on
        # the image alone
        z = self.z0_[:1].repeat(len(X), 1).to(dev).requires_grad_(True)  # (n, latent)
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
