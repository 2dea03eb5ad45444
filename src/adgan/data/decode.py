"""The one image decoder: an image file, or its encoded bytes (from a database), to uint8
(C, H, W), converted to gray or RGB and optionally centre-cropped and resized.

Image files are untrusted: ``read_image_bytes`` opens only regular files (a FIFO, a device
or a link to one is refused without being opened) and reads at most ``MAX_IMAGE_BYTES``;
``decode_image`` decodes only images whose header states at most ``MAX_IMAGE_PIXELS``
pixels. Each refusal is an ``ImageError`` naming the file."""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from adgan.data.transforms import center_crop_resize
from adgan.errors import DataError
from adgan.params import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


class ImageError(DataError):
    """An unreadable image; ``reason`` is the message without the file name."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_image_bytes(path: Path | str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of image file ``path``: a regular file (links followed) of at most ``limit``
    bytes. Anything else (a FIFO, a device, a socket, a link to one) is refused without
    being opened, and a larger file without being read: ImageError naming the file."""
    path = Path(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(path, f"{_kind(st.st_mode)}, not an image file; not opened")
        if st.st_size > limit:
            raise ImageError(path, f"{st.st_size} bytes, over the {limit} read from one image")
        # O_NONBLOCK: should the file be swapped for a FIFO meanwhile, open does not wait
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ImageError(path, "not a regular file; not read")
            data = fh.read(limit + 1)
    except OSError as exc:  # permissions, a broken link, a vanished file
        raise ImageError(path, f"unreadable file ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise ImageError(path, f"over the {limit} bytes read from one image")
    return data


def decode_image(
    source: Path | bytes, channels: int | None, size: int | None, where: Path | str = ""
) -> np.ndarray:
    """Read an image file (a path) or encoded image bytes as uint8 (C, H, W): gray for
    ``channels`` 1, RGB for 3, and with None gray images one channel and others three;
    with ``size``, the largest centred square resized to ``size`` x ``size`` (bicubic).
    Only the first frame of animated files is read. ImageError (a DataError) names
    ``where`` (default: the path) for any image the decoders cannot read, or that states more
    than ``MAX_IMAGE_PIXELS`` pixels (refused before decoding)."""
    where = where or source
    if isinstance(source, Path):
        source = read_image_bytes(source)
    elif len(source) > MAX_IMAGE_BYTES:  # a database's value
        raise ImageError(
            where, f"{len(source)} bytes, over the {MAX_IMAGE_BYTES} read from one image"
        )
    try:
        with Image.open(io.BytesIO(source)) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ImageError(
                    where, f"{w}x{h} pixels, over the {MAX_IMAGE_PIXELS} decoded from one image"
                )
            img.seek(0)  # first frame of animated GIF / WebP
            img.load()
            img = convert_mode(img, channels)
            if size is not None:
                img = center_crop_resize(img, size)
            arr = np.asarray(img, dtype=np.uint8)
    except ImageError:
        raise
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
