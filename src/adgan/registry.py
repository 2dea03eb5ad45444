"""The explicit registry of detectors: name -> (class, default parameters).

The command line and the benchmark build every detector through ``make_detector``, and
``load_detector`` reads a saved one back by the name written into its file. The detector
classes do not import this module: each states its own registered name
(``detector_name``).
"""

from __future__ import annotations

import os
from typing import Any

from adgan.base import FORMAT, BaseDetector
from adgan.detectors.adgan import ADGAN, PriorLikelihood
from adgan.detectors.adgan_plus import ADGANPlus
from adgan.detectors.anogan import AnoGAN
from adgan.detectors.autoencoder import DCAE, VAE
from adgan.detectors.classic import ClassicDetector
from adgan.detectors.discriminator import DiscriminatorScore
from adgan.detectors.simple import MeanImage
from adgan.errors import CheckpointError, ConfigError
from adgan.files import check_header, safe_torch_load

DETECTORS: dict[str, tuple[type, dict[str, Any]]] = {
    "adgan": (ADGAN, {}),
    "adgan-plus": (ADGANPlus, {}),
    "kde": (ClassicDetector, {"model": "kde", "features": "pca"}),
    "ocsvm": (ClassicDetector, {"model": "ocsvm", "features": "pca"}),
    "iforest": (ClassicDetector, {"model": "iforest", "features": "pca"}),
    "gmm": (ClassicDetector, {"model": "gmm", "features": "pca"}),
    "kde-alexnet": (ClassicDetector, {"model": "kde", "features": "alexnet"}),
    "ocsvm-alexnet": (ClassicDetector, {"model": "ocsvm", "features": "alexnet"}),
    "iforest-alexnet": (ClassicDetector, {"model": "iforest", "features": "alexnet"}),
    "gmm-alexnet": (ClassicDetector, {"model": "gmm", "features": "alexnet"}),
    "dcae": (DCAE, {}),
    "vae": (VAE, {}),
    "anogan": (AnoGAN, {}),
    "discriminator": (DiscriminatorScore, {}),
    "prior": (PriorLikelihood, {}),
    "mean-image": (MeanImage, {}),
}

#: detectors that share ADGAN's trained GAN (the benchmark trains it once for all of them)
GAN_DETECTORS = ("adgan", "adgan-plus", "anogan", "discriminator", "prior")

_PARAMS: dict[str, dict[str, Any]] = {}


def detector_params(name: str) -> dict[str, Any]:
    """The parameters a registered detector takes, with their default values."""
    if name not in _PARAMS:
        cls, defaults = DETECTORS[name]
        _PARAMS[name] = {**cls().get_params(deep=False), **defaults}
    return _PARAMS[name]


def make_detector(name: str, **params: Any) -> BaseDetector:
    """Build a registered detector; ``params`` override its defaults (unknown keys ignored
    only when the detector does not take them, so one preset can serve several methods)."""
    if name not in DETECTORS:
        raise ConfigError(f"method: unknown method {name!r}; known: {', '.join(DETECTORS)}")
    cls, defaults = DETECTORS[name]
    accepted = detector_params(name)
    kw = dict(defaults)
    kw.update({k: v for k, v in params.items() if k in accepted})
    return cls(**kw)


def load_detector(path: str | os.PathLike, **overrides: Any) -> BaseDetector:
    """Load a detector written by ``BaseDetector.save``; ``overrides`` replace saved
    parameters before the state is restored (e.g. ``device="cpu"`` for a model saved on a
    GPU machine). Saved parameters this version no longer takes are ignored."""
    blob = safe_torch_load(path, "detector")
    check_header(blob, FORMAT, path, "detector file")
    name = blob.get("detector")
    if name not in DETECTORS:
        raise CheckpointError(f"{path}: unknown detector {name!r}; known: {sorted(DETECTORS)}")
    try:
        return DETECTORS[name][0]._from_saved(blob, overrides)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    except ConfigError as exc:  # a setting in the file out of range (adgan.params)
        raise CheckpointError(f"{path}: detector file refused ({exc})") from exc
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: damaged or incompatible detector file ({exc!r:.200})"
        ) from exc
