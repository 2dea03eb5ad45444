"""A sanity floor: the squared distance to the mean normal training image."""

from __future__ import annotations

import numpy as np

from adgan.base import BaseDetector
from adgan.params import CALIBRATION, CONTAMINATION, SEED


class MeanImage(BaseDetector):
    """score_samples = -||x - mean normal training image||^2.

    Every learned method should beat this; on MNIST it is already strong for some classes.

    Parameters
    ----------
    contamination : float
        Fraction of the calibration images flagged as anomalous (default 0.05): ``offset_``
        is this quantile of their ``score_samples``, so that fraction falls below it (their
        anomaly score above ``-offset_``; ``predict`` gives -1).
    calibration : float or int
        Fraction or number of the training images held out of the mean to set the
        threshold (default 0.1, as every detector); 0 calibrates on the training images
        themselves.
    random_state : int
        Seeds the calibration split.

    Examples
    --------
    >>> import numpy as np
    >>> from adgan.detectors.simple import MeanImage
    >>> X = np.zeros((10, 1, 8, 8), np.float32)
    >>> MeanImage().fit(X).anomaly_score(X + 0.5)[:2]
    array([16., 16.])
    """

    detector_name = "mean-image"
    param_constraints = {
        "contamination": CONTAMINATION,
        "calibration": CALIBRATION,
        "random_state": SEED,
    }

    def __init__(
        self, *, contamination: float = 0.05, calibration: float | int = 0.1, random_state: int = 0
    ):
        self.contamination = contamination
        self.calibration = calibration
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        self.mean_ = X.astype(np.float64).mean(axis=0)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -((X.astype(np.float64) - self.mean_) ** 2).reshape(len(X), -1).sum(axis=1)

    def _get_state(self) -> dict:
        import torch

        return {"mean": torch.from_numpy(self.mean_)}

    def _set_state(self, state: dict) -> None:
        self.mean_ = state["mean"].numpy()
