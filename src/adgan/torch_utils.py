"""Small torch helpers shared by training, the detectors and the search."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_depth = 0  # nesting depth: only the outermost block switches the mode


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero inside the block (CPU only).

    Gradients of an image's loss shrink towards zero through the generator's layers; on x86
    CPUs arithmetic on subnormal numbers is tens of times slower, and we measured the search
    running up to 20x slower without this. Values below ~1e-38 (float32) change no score.
    """
    global _depth
    if _depth == 0:
        torch.set_flush_denormal(True)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            torch.set_flush_denormal(False)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's global CPU random numbers seeded with ``seed`` inside the block (to build
    networks with a reproducible initialisation), the caller's own state restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
