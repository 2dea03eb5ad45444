"""Image grids: a PIL picture (``image_grid``), a matplotlib Figure (``plot_images``, shown
inline by a notebook) or a PNG file written atomically (``save_image_grid``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from adgan.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def plot_images(
    images: np.ndarray,
    nrow: int | None = None,
    scale: int = 2,
    path: str | Path | None = None,
) -> Figure:
    """Images (n, C, H, W) tiled as ``image_grid`` does, in a matplotlib Figure of exactly the
    grid's pixels (each image ``scale`` times its size); written as a PNG when ``path`` is
    given. pyplot is not used: matplotlib's backend stays as the caller set it."""
    from matplotlib.figure import Figure

    grid = np.asarray(image_grid(images, nrow=nrow, scale=scale))
    dpi = 100
    fig = Figure(figsize=(grid.shape[1] / dpi, grid.shape[0] / dpi), dpi=dpi)
    fig.figimage(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255)
    if path is not None:
        atomic_write(Path(path), lambda fh: fig.savefig(fh, format="png", dpi=dpi))
    return fig
