"""The explicit registry of detectors: name -> (class, default parameters).

The command line and the benchmark build every detector through ``make_detector``.
"""

from __future__ import annotations

from typing import Any

from adgan.detectors.adgan import ADGAN, DiscriminatorScore, PriorLikelihood
from adgan.detectors.anogan import AnoGAN
from adgan.detectors.autoencoder import DCAE, VAE
from adgan.detectors.classic import ClassicDetector
from adgan.detectors.simple import MeanImage
from adgan.errors import ConfigError

DETECTORS: dict[str, tuple[type, dict[str, Any]]] = {
    "adgan": (ADGAN, {}),
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
GAN_DETECTORS = ("adgan", "anogan", "discriminator", "prior")


def detector_params(name: str) -> dict[str, Any]:
    """The parameters a registered detector takes, with their default values."""
    if name not in _PARAMS:
        cls, defaults = DETECTORS[name]
        _PARAMS[name] = {**cls().get_params(deep=False), **defaults}
    return _PARAMS[name]


_PARAMS: dict[str, dict[str, Any]] = {}


def make_detector(name: str, **params: Any):
    """Build a registered detector; ``params`` override its defaults (unknown keys ignored
    only when the detector does not take them, so one preset can serve several methods)."""
    if name not in DETECTORS:
        raise ConfigError(f"method: unknown method {name!r}; known: {', '.join(DETECTORS)}")
    cls, defaults = DETECTORS[name]
    accepted = cls().get_params(deep=False)
    kw = dict(defaults)
    kw.update({k: v for k, v in params.items() if k in accepted})
    return cls(**kw)


def name_of(detector) -> str:
    """Registry name of a detector instance (exact class and default parameters)."""
    for name, (cls, defaults) in DETECTORS.items():
        if type(detector) is cls and all(
            getattr(detector, k, None) == v for k, v in defaults.items()
        ):
            return name
    raise ConfigError(f"{type(detector).__name__} is not a registered detector")
