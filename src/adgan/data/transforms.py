"""Pixel scaling, resizing and channel conversion for uint8 image arrays (N, C, H, W)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from adgan.errors import ConfigError, DataError


def to_float(images: np.ndarray) -> np.ndarray:
    """Scale uint8 images to float32 in [-1, 1] (``x / 127.5 - 1``), the generator's range."""
    return np.asarray(images, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Map float images in [-1, 1] back to uint8, rounding and clipping out-of-range values."""
    scaled = (np.asarray(images, dtype=np.float32) + 1.0) * 127.5
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def center_crop_resize(img: Image.Image, size: int) -> Image.Image:
    """Crop the largest centred square from ``img`` and resize it to ``size`` x ``size``."""
    if size < 1:
        raise ConfigError(f"size must be a positive integer, got {size}")
    w, h = img.size
    side = min(w, h)
    if (w, h) != (side, side):
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return img


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 images (N, C, H, W) to (N, C, size, size), centre-cropping non-square ones.

    Each channel is resampled on its own with PIL's bicubic filter, which is what PIL does
    for multi-band images too, so any channel count works.
    """
    images = _check_images(images)
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images.copy()
    out = np.empty((n, c, size, size), dtype=np.uint8)
    for i in range(n):
        for j in range(c):
            band = Image.fromarray(images[i, j])  # 2-D uint8 -> mode "L"
            out[i, j] = np.asarray(center_crop_resize(band, size))
    return out


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Convert uint8 images (N, C, H, W) between 1 and 3 channels.

    1 -> 3 repeats the gray plane; 3 -> 1 takes the ITU-R 601-2 luma with PIL's own integer
    arithmetic, so arrays match images converted with ``Image.convert("L")`` exactly.
    """
    images = _check_images(images)
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1:
        return np.repeat(images, 3, axis=1)
    if c == 3:
        rgb = images.astype(np.uint32)
        # PIL's L24: weights 0.299, 0.587, 0.114 in 16-bit fixed point, rounded.
        luma = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
        return luma[:, None].astype(np.uint8)  # (N, 1, H, W)
    raise DataError(f"cannot convert images with {c} channels; expected 1 or 3")


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(
            f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {images.shape}"
        )
    return images
