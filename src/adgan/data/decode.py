"""The one image decoder: an image file, or its encoded bytes (from a database), to uint8
(C, H, W), converted to gray or RGB and optionally centre-cropped and resized."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from adgan.data.transforms import center_crop_resize
from adgan.errors import DataError

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class ImageError(DataError):
    """An unreadable image; ``reason`` is the message without the file name."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def decode_image(
    source: Path | bytes, channels: int | None, size: int | None, where: Path | str = ""
) -> np.ndarray:
    """Read an image file (a path) or encoded image bytes as uint8 (C, H, W): gray for
    ``channels`` 1, RGB for 3, and with None gray images one channel and others three;
    with ``size``, the largest centred square resized to ``size`` x ``size`` (bicubic).
    Only the first frame of animated files is read. ImageError (a DataError) names
    ``where`` (default: the path) for any image the decoders cannot read."""
    where = where or source
    try:
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as img:
            img.seek(0)  # first frame of animated GIF / WebP
            img.load()
            img = convert_mode(img, channels)
            if size is not None:
                img = center_crop_resize(img, size)
            arr = np.asarray(img, dtype=np.uint8)
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, ... on bad data
        msg = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e))  # no addresses
        raise ImageError(where, f"unreadable image ({type(e).__name__}: {msg})") from e
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def convert_mode(img: Image.Image, channels: int | None) -> Image.Image:
    """``img`` as 'L' (channels 1) or 'RGB' (3); None: 'L' if it is gray, else 'RGB'."""
    if channels is None:
        channels = 1 if is_gray(img) else 3
    if img.mode in WIDE_MODES or img.mode == "I":
        # PIL clips values above 255 when converting to 'L'; scale 16-bit data down instead.
        wide = np.asarray(img, dtype=np.float64)
        if img.mode != "I" or wide.max(initial=0) > 255:
            wide = wide / 257.0
        img = Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
    return img.convert("L" if channels == 1 else "RGB")


def is_gray(img: Image.Image) -> bool:
    if img.mode in GRAY_MODES:
        return True
    if img.mode in ("P", "PA"):
        palette = img.getpalette("RGB") or []
        return palette[0::3] == palette[1::3] == palette[2::3]
    return False
