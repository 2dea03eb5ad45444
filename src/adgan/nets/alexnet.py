"""AlexNet (Krizhevsky et al. 2012) as torchvision builds it, for ImageNet features.

The module and parameter names are torchvision's exactly (``features.0.weight``, ...,
``classifier.6.bias``), so a state dict saved from ``torchvision.models.alexnet`` loads
without torchvision being installed here::

    # on a machine with torchvision and internet access
    import torch, torchvision
    torch.save(torchvision.models.alexnet(weights="DEFAULT").state_dict(), "alexnet.pth")

Nothing is ever downloaded by this module.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adgan.errors import CheckpointError, ConfigError
from adgan.files import fingerprint, safe_torch_load
from adgan.torch_utils import seeded

#: ImageNet channel statistics torchvision's pretrained AlexNet expects, on [0, 1] pixels
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the smallest input side that still leaves a 1x1 map after the last max-pool
MIN_SIZE = 63

WEIGHTS_HINT = (
    "make one on a machine with torchvision: torch.save(torchvision.models.alexnet("
    'weights="DEFAULT").state_dict(), "alexnet.pth")'
)


def conv_stack() -> nn.Sequential:
    """AlexNet's ``features``: five convolutions with ReLUs and three max-pools."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # features.0
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),  # features.3
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),  # features.6
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # features.8
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),  # features.10
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class AlexNet(nn.Module):
    """torchvision's AlexNet: the same layers, indices and parameter names.

    ``features`` ends with the last convolution (``features.10``), its ReLU and a 3x3/2
    max-pool; on 224 px input it gives 256 x 6 x 6 = 9216 values per image.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = conv_stack()
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),  # classifier.1
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),  # classifier.4
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),  # classifier.6
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def load_alexnet(weights: str | os.PathLike, seed: int = 0) -> AlexNet:
    """An AlexNet in eval mode with weights from a torchvision state-dict file.

    ``weights="random"`` gives PyTorch's default initialisation drawn with ``seed`` instead
    (for tests only: random features are not what the paper uses).
    """
    if weights is None:
        raise ConfigError(
            "alexnet_weights: features='alexnet' needs an ImageNet AlexNet state dict file; "
            + WEIGHTS_HINT
        )
    if isinstance(weights, str) and weights == "random":
        with seeded(seed):  # the caller's own random state is left as it was
            return AlexNet().eval()
    state = safe_torch_load(weights, "AlexNet weights")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights}: not an AlexNet state dict; {WEIGHTS_HINT}")
    net = AlexNet()
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # missing / unexpected keys or wrong shapes
        first = " ".join(str(exc).split())
        raise CheckpointError(
            f"{weights}: not torchvision AlexNet weights ({first[:160]}); {WEIGHTS_HINT}"
        ) from exc
    return net.eval()


def preprocess(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Images in [-1, 1] (n, 1 or 3, H, W) -> AlexNet input (n, 3, size, size).

    [-1, 1] -> [0, 1], gray planes repeated to RGB, bilinear resize, then ImageNet
    mean/std normalisation, as torchvision's pretrained weights expect.
    """
    if size < MIN_SIZE:
        raise ConfigError(f"alexnet_size: expected at least {MIN_SIZE} pixels, got {size}")
    x = (images.float() + 1.0) / 2.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def conv_features(
    features: nn.Module,
    images: np.ndarray,
    size: int = 224,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Flattened output of ``features`` (AlexNet's conv stack) for images in [-1, 1].

    Returns float64 (n, 256 * k * k); k = 6 at 224 px. Batched, in eval mode.
    """
    features = features.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(device)
        out.append(features(preprocess(x, size)).flatten(1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


#: the features of recent image sets (float32), keyed by a fingerprint of the weights, the
#: size and the images, at most ``FEATURE_CACHE_ITEMS`` of them and ``FEATURE_CACHE_BYTES``
#: in all: the four *-alexnet methods of one evaluation see the same images
FEATURE_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
FEATURE_CACHE_ITEMS = 4
FEATURE_CACHE_BYTES = 2**30


def cached_conv_features(
    features: nn.Module,
    images: np.ndarray,
    size: int = 224,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """``conv_features`` as float32 (its values are float32 products, so exact), computed
    once for the same weights, size and images while they stay in ``FEATURE_CACHE``."""
    key = fingerprint(
        features.state_dict(), str(size), str((images.shape, images.dtype.str)), images
    )
    out = FEATURE_CACHE.get(key)
    if out is None:
        out = conv_features(features, images, size, batch_size, device).astype(np.float32)
        if out.nbytes <= FEATURE_CACHE_BYTES:
            FEATURE_CACHE[key] = out
        while len(FEATURE_CACHE) > FEATURE_CACHE_ITEMS or (
            sum(v.nbytes for v in FEATURE_CACHE.values()) > FEATURE_CACHE_BYTES
        ):
            FEATURE_CACHE.popitem(last=False)
    else:
        FEATURE_CACHE.move_to_end(key)
    return out
