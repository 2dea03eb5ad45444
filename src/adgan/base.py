"""The detector contract, stated once.

Every detector follows scikit-learn's outlier estimators:

* ``__init__`` only stores its keyword-only arguments;
* ``fit(X)`` validates, learns, sets attributes ending in ``_`` and returns ``self``;
* ``score_samples(X)``: **higher means more normal**;
* ``anomaly_score(X) = -score_samples(X)``: **higher means more anomalous**; ranking,
  ROC-AUC and the command line use this one;
* ``decision_function(X) = score_samples(X) - offset_``; ``predict`` gives +1 (inlier) where
  the decision is >= 0 and -1 (outlier) elsewhere;
* ``offset_`` is set from normal training data alone: the ``contamination`` quantile of the
  ``score_samples`` of the calibration images, so that about that fraction of them is flagged
  (-1). They are held out of the training images (``calibration`` > 0: every detector's
  default, 10%, and every method's in the built-in presets) or, with ``calibration=0`` (as
  scikit-learn's outlier detectors do), the training images themselves, which a model may
  score above new normal images (a kernel density its own points most of all); test data
  never sets it;
* a sample's score depends only on the fitted model and that sample;
* ``fit`` checks every parameter against the class's ``param_constraints``
  (``adgan.params``) before any work; a value out of range is a ConfigError naming it;
* ``sklearn.base.clone`` works, and ``save`` / ``adgan.registry.load_detector`` round-trip a
  fitted detector. A saved detector is one file read with ``torch.load(weights_only=True)``:
  tensors, numbers and strings only, so loading never runs code from the file.

Every detector fits the same way (``BaseDetector.fit``): parameters checked; X validated
(and, with labels y where the detector reads them, split into normal and anomalous items);
a setting chosen on the labels where the detector does that (``_select``); the
``calibration`` images held out of the normal ones; ``_fit`` on the rest; the threshold set
from the calibration images' scores (``_calibrate``). Subclasses implement ``_fit``,
``_score`` and the state hooks, and override the other hooks where they need to.

Image detectors take arrays of shape (n, C, H, W) (or (n, H, W) for gray images), either
uint8 in [0, 255] or floating point already scaled to [-1, 1]; feature detectors take
(n, d) arrays.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted

from adgan.errors import ConfigError, DataError
from adgan.files import atomic_torch_save, header
from adgan.params import check_params
from adgan.torch_utils import flush_denormals

FORMAT = "adgan-detector"
#: how far float images may stray past [-1, 1] (rounding) before they are refused
FLOAT_SLACK = 1e-3


def as_images(X: Any, name: str = "X") -> np.ndarray:
    """Validate an image batch and return float32 (n, C, H, W) scaled to [-1, 1]."""
    X = np.asarray(X)
    if X.ndim == 3:
        X = X[:, None]  # (n, H, W) -> (n, 1, H, W)
    if X.ndim != 4:
        raise DataError(f"{name}: expected images of shape (n, C, H, W), got shape {X.shape}")
    if X.shape[0] == 0:
        raise DataError(f"{name}: expected at least one image, got none")
    if X.shape[1] not in (1, 3):
        raise DataError(f"{name}: expected 1 or 3 channels, got {X.shape[1]} (shape {X.shape})")
    if X.dtype == np.uint8:  # one float32 copy, scaled in place
        out = X.astype(np.float32)
        out /= 127.5
        out -= 1.0
        return out
    if not np.issubdtype(X.dtype, np.floating):
        raise DataError(f"{name}: expected uint8 or float images, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    if not np.all(np.isfinite(X)):
        raise DataError(f"{name}: images contain NaN or infinite values")
    lo, hi = float(X.min()), float(X.max())
    if lo < -1.0 - FLOAT_SLACK or hi > 1.0 + FLOAT_SLACK:
        raise DataError(
            f"{name}: float images must be scaled to [-1, 1] (x / 127.5 - 1; or pass uint8 "
            f"images in 0..255), got values from {lo:.4g} to {hi:.4g}"
        )
    return X


def resolve_device(device: str | None) -> torch.device:
    """'auto' (or None) picks CUDA when present, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} asked for, but CUDA is not available here")
    return dev


def calibration_count(n: int, calibration: float | int) -> int:
    """Images of n held out to calibrate: a fraction of them (a float in [0, 1)) or a
    count (an integer)."""
    if isinstance(calibration, float | np.floating):
        if not 0.0 <= calibration < 1.0:
            raise ConfigError(
                f"calibration: expected a fraction in [0, 1) or a count, got {calibration}"
            )
        return int(round(calibration * n))
    return int(calibration)


def split_calibration(n: int, calibration: float | int, random_state: int | None):
    """Indices (fit, calibration) for holding calibration images out of the training set.

    ``calibration`` is a fraction in [0, 1) or an absolute count; 0 keeps everything for
    fitting and calibrates on the training images themselves.
    """
    n_cal = calibration_count(n, calibration)
    if n_cal <= 0:
        idx = np.arange(n)
        return idx, idx
    if n - n_cal < 2:
        raise DataError(
            f"calibration: {n_cal} of {n} training images held out leaves too few to fit"
        )
    perm = np.random.default_rng(random_state).permutation(n)
    return np.sort(perm[n_cal:]), np.sort(perm[:n_cal])


def outlier_labels(y, n: int, what: str) -> np.ndarray | None:
    """Labels for model selection on a labelled holdout: 1 inlier, -1 outlier (as ``predict``
    returns them), as an int array of length n; None (with a warning) when y holds other
    values, as scikit-learn's outlier detectors ignore y. ``what`` says what y chooses."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"y: expected {n} labels (1 inlier, -1 outlier), got shape {y.shape}")
    values = set(np.unique(y).tolist())
    if not values <= {-1, 1}:
        warnings.warn(
            f"y: only labels 1 (inlier) / -1 (outlier) choose {what}; "
            f"got values {sorted(values, key=str)[:5]}, so y is ignored",
            UserWarning,
            stacklevel=3,
        )
        return None
    if 1 not in values:
        raise DataError("y: no inliers (label 1) to fit on")
    return y.astype(np.int64)


class BaseDetector(OutlierMixin, BaseEstimator):
    """Shared behaviour: the contract above, fitting, thresholds and files.

    Subclasses implement ``_fit`` (learn from validated normal items), ``_score``
    (score_samples of validated items, higher = more normal) and ``_get_state`` /
    ``_set_state``, declare ``param_constraints`` and their registered name.
    """

    _estimator_type = "outlier_detector"
    #: "images" for (n, C, H, W) input, "features" for (n, d) input
    input_kind = "images"
    #: the name in ``adgan.registry.DETECTORS`` that builds this detector (written to files)
    detector_name = ""
    #: ``fit(X, y)`` reads labels (1 normal, -1 anomalous) of training items to choose a
    #: setting (``_select``, ``_calibrate``); others ignore y, as scikit-learn's do
    selects_on_labels = False
    #: what the labels choose, for the warning when y holds other labels
    labels_choose = "nothing"
    #: parameter name -> ``adgan.params.Constraint``, checked first thing in ``fit``
    param_constraints: dict = {}

    # -- validation -------------------------------------------------------------------
    def _validate(self, X, reset: bool) -> np.ndarray:
        if self.input_kind == "images":
            return self._validate_images(X, reset)
        return self._validate_data_2d(X, reset)

    def _validate_images(self, X, reset: bool) -> np.ndarray:
        X = as_images(X)
        if reset:
            self.image_shape_ = tuple(int(s) for s in X.shape[1:])
        elif tuple(X.shape[1:]) != tuple(self.image_shape_):
            raise DataError(
                f"X: expected images of shape {tuple(self.image_shape_)} as in fit, "
                f"got {tuple(X.shape[1:])}"
            )
        return X

    def _validate_data_2d(self, X, reset: bool) -> np.ndarray:
        from sklearn.utils.validation import validate_data

        return validate_data(self, X, reset=reset, dtype=np.float64)

    def _features(self, X: np.ndarray) -> np.ndarray:
        """What ``_fit``, ``_select``, ``_calibrate`` and ``_score`` see of validated X."""
        return X

    # -- fit, then calibrate -----------------------------------------------------------------
    def fit(self, X, y=None):
        """Check the parameters, then learn from the normal items of X (those labelled 1
        where the detector reads labels y; all of X otherwise) less the ``calibration``
        items held out of them, and put the threshold ``offset_`` at the ``contamination``
        quantile of the calibration items' scores. Returns self."""
        check_params(self)
        with flush_denormals():
            X = self._validate(X, reset=True)
            labels = None
            if self.selects_on_labels:
                labels = outlier_labels(y, len(X), self.labels_choose)
            X = self._features(X)
            self._select(X, labels)
            anomalies = None
            if labels is not None and (labels == -1).any():
                anomalies, X = X[labels == -1], X[labels == 1]
            fit_idx, cal_idx = split_calibration(len(X), self.calibration, self.random_state)
            self._fit(X[fit_idx])
            self._set_threshold(self._calibrate(X[cal_idx], anomalies))
        return self

    def _select(self, X: np.ndarray, labels: np.ndarray | None) -> None:
        """Before fitting: choose a setting on the labelled items (labels 1 / -1, or None)."""

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _calibrate(self, X_cal: np.ndarray, anomalies: np.ndarray | None) -> np.ndarray:
        """score_samples of the calibration items (after ``_fit``); ``anomalies``: the
        items labelled -1, where the detector reads labels, for a choice made after
        fitting."""
        return self._score(X_cal)

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _set_threshold(self, calibration_scores) -> None:
        """Keep the calibration images' scores and put ``offset_`` at their
        ``contamination`` quantile."""
        self.calibration_scores_ = np.sort(np.asarray(calibration_scores, dtype=np.float64))
        self.offset_ = float(np.quantile(self.calibration_scores_, self.contamination))

    # -- scores -------------------------------------------------------------------------------
    def score_samples(self, X) -> np.ndarray:
        check_is_fitted(self, "offset_")
        X = self._validate(X, reset=False)
        with flush_denormals():
            return np.asarray(self._score(self._features(X)), dtype=np.float64)

    def anomaly_score(self, X) -> np.ndarray:
        """Higher = more anomalous (the negative of ``score_samples``)."""
        return -self.score_samples(X)

    def decision_function(self, X) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def percentile(self, anomaly_scores) -> np.ndarray:
        """Percentile (0-100) of each anomaly score among the calibration images' scores."""
        check_is_fitted(self, "offset_")
        cal = -self.calibration_scores_[::-1]  # ascending anomaly scores
        return 100.0 * np.searchsorted(cal, np.asarray(anomaly_scores), side="right") / len(cal)

    # -- files ----------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        """Fitted state as tensors, numbers and strings (no arbitrary objects)."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted detector to one file, atomically (``adgan.registry.load_detector``
        reads it)."""
        check_is_fitted(self, "offset_")
        state = self._get_state()
        state["offset_"] = self.offset_
        state["calibration_scores_"] = torch.from_numpy(self.calibration_scores_.copy())
        if self.input_kind == "images":
            state["image_shape_"] = list(self.image_shape_)
        else:
            state["n_features_in_"] = int(self.n_features_in_)
        blob = {
            **header(FORMAT),
            "detector": self.detector_name,
            "params": json.dumps(self.get_params(deep=False)),
            "state": state,
        }
        return atomic_torch_save(blob, path)

    @classmethod
    def _from_saved(cls, blob: dict, overrides: dict) -> BaseDetector:
        """The detector a ``save`` wrote: saved parameters (those this version still takes;
        JSON lists back to tuples where the default is one), then ``overrides``, then the
        fitted state."""
        params = json.loads(blob["params"])
        defaults = cls().get_params(deep=False)
        params = {k: v for k, v in params.items() if k in defaults}
        for k, v in params.items():
            if isinstance(v, list) and isinstance(defaults[k], tuple):
                params[k] = tuple(v)
        params.update({k: v for k, v in overrides.items() if k in defaults})
        det = cls(**params)
        check_params(det)  # the file is untrusted: its settings are checked as fit's are
        state = dict(blob["state"])
        det.offset_ = float(state.pop("offset_"))
        det.calibration_scores_ = state.pop("calibration_scores_").numpy().astype(np.float64)
        if "image_shape_" in state:
            det.image_shape_ = tuple(state.pop("image_shape_"))
        if "n_features_in_" in state:
            det.n_features_in_ = int(state.pop("n_features_in_"))
        det._set_state(state)
        return det
