"""adgan: image anomaly detection with generative adversarial networks (ADGAN) and baselines."""

__version__ = "0.1.0"

from adgan.base import BaseDetector, load_detector  # noqa: E402
from adgan.detectors.adgan import ADGAN  # noqa: E402
from adgan.registry import DETECTORS, make_detector  # noqa: E402

__all__ = ["ADGAN", "BaseDetector", "DETECTORS", "load_detector", "make_detector", "__version__"]
