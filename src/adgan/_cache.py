"""A small in-process memory of recent results, keyed by a digest of their inputs.

Used where several methods of one evaluation would otherwise repeat the same deterministic
computation: ADGAN's search shared with the prior-likelihood score, AlexNet's features shared
by the four *-alexnet methods.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import torch


def digest(*parts: Any) -> bytes:
    """A digest of arrays, tensors (values, shape and dtype), dicts of them and other values
    (by repr)."""
    h = hashlib.blake2b(digest_size=20)

    def add(p):
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().contiguous().numpy()
        if isinstance(p, np.ndarray):
            h.update(repr((p.shape, p.dtype.str)).encode())
            h.update(np.ascontiguousarray(p))  # the buffer itself: no copy of the bytes
        elif isinstance(p, dict):
            for k, v in p.items():
                h.update(repr(k).encode())
                add(v)
        else:
            h.update(repr(p).encode())

    for p in parts:
        add(p)
    return h.digest()


class Recent:
    """Least-recently-used results, at most ``max_items`` of them and ``max_bytes`` in all."""

    def __init__(self, max_items: int, max_bytes: int = 2**30):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def get(self, key: bytes) -> Any | None:
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key][0]

    def put(self, key: bytes, value: Any, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        self._items[key] = (value, nbytes)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items or (
            sum(n for _, n in self._items.values()) > self.max_bytes
        ):
            self._items.popitem(last=False)
