"""adgan: image anomaly detection with generative adversarial networks (ADGAN) and baselines."""

from adgan.base import BaseDetector
from adgan.detectors.adgan import ADGAN
from adgan.gan import FittedGAN
from adgan.registry import DETECTORS, load_detector, make_detector
from adgan.version import __version__

__all__ = [
    "ADGAN",
    "BaseDetector",
    "DETECTORS",
    "FittedGAN",
    "load_detector",
    "make_detector",
    "__version__",
]
