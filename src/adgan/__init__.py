"""adgan: image anomaly detection with generative adversarial networks (ADGAN) and baselines."""

from adgan.base import BaseDetector, load_detector
from adgan.detectors.adgan import ADGAN
from adgan.registry import DETECTORS, make_detector
from adgan.version import __version__

__all__ = ["ADGAN", "BaseDetector", "DETECTORS", "load_detector", "make_detector", "__version__"]
