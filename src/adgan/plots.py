"""Image grids and figures (PNG), written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from adgan.files import atomic_write


def to_uint8_hwc(images: np.ndarray) -> np.ndarray:
    """(n, C, H, W) uint8 or float in [-1, 1] -> (n, H, W, C) uint8."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint((images.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(
            np.uint8
        )
    return images.transpose(0, 2, 3, 1)


def image_grid(
    images: np.ndarray, nrow: int | None = None, pad: int = 2, scale: int = 1
) -> Image.Image:
    """Tile images (n, C, H, W) into one picture, row by row."""
    imgs = to_uint8_hwc(images)
    n, h, w, c = imgs.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = imgs[i]
    pic = Image.fromarray(grid[..., 0] if c == 1 else grid)
    if scale > 1:
        pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    return pic


def save_image_grid(
    images: np.ndarray, path: str | Path, nrow: int | None = None, scale: int = 2
) -> Path:
    path = Path(path)
    pic = image_grid(images, nrow=nrow, scale=scale)
    return atomic_write(path, lambda fh: pic.save(fh, format="PNG"))
