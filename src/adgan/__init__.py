"""adgan: image anomaly detection with generative adversarial networks (ADGAN) and baselines.

Every registered detector's class is importable from here (``adgan.DETECTORS`` maps the
command line's method names to them and their default parameters)::

    from adgan import ADGAN, MeanImage, ClassicDetector
    det = ClassicDetector(model="kde")  # the "kde" method
"""

from adgan.base import BaseDetector
from adgan.detectors.adgan import ADGAN, PriorLikelihood
from adgan.detectors.adgan_plus import ADGANPlus
from adgan.detectors.anogan import AnoGAN
from adgan.detectors.autoencoder import DCAE, VAE
from adgan.detectors.classic import ClassicDetector
from adgan.detectors.discriminator import DiscriminatorScore
from adgan.detectors.simple import MeanImage
from adgan.gan import FittedGAN
from adgan.registry import DETECTORS, load_detector, make_detector
from adgan.version import __version__

__all__ = [
    "ADGAN",
    "ADGANPlus",
    "AnoGAN",
    "BaseDetector",
    "ClassicDetector",
    "DCAE",
    "DETECTORS",
    "DiscriminatorScore",
    "FittedGAN",
    "MeanImage",
    "PriorLikelihood",
    "VAE",
    "load_detector",
    "make_detector",
    "__version__",
]
