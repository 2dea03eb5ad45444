"""Small torch helpers shared by training, the detectors and the search."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def flush_denormals_enabled() -> bool:
    """Whether this thread's CPU flushes subnormal floats to zero (a per-thread setting that
    torch can set but not read): a subnormal float32 survives a product only when it is off."""
    tiny = torch.full((1,), 1e-39, dtype=torch.float32)  # subnormal: below 1.18e-38
    return bool((tiny * 1.0).item() == 0.0)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero inside the block (CPU only), then restore the calling
    thread's own setting, whatever it was.

    Gradients of an image's loss shrink towards zero through the generator's layers; on x86
    CPUs arithmetic on subnormal numbers is tens of times slower, and we measured the search
    running up to 20x slower without this. Values below ~1e-38 (float32) change no score.
    """
    before = flush_denormals_enabled()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch's global CPU random numbers seeded with ``seed`` inside the block (to build
    networks with a reproducible initialisation), the caller's own state restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
