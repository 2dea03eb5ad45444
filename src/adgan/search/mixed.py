"""``precision="mixed"``: the fused kernel with less per-pair state to move.

Every (image, seed) pair owns a copy of the generator's weights and two Adam moments, and
on CPU the search spends much of its time moving them between memory and the cores: the
exact kernel reads and writes 12 bytes per parameter and pair (weights, m and v in float32)
at every step (the last writes the weights alone), and reads the weights once more for the
forward pass. Here a pair's copy of a convolution's weights is the shared float32 weights
plus the pair's own change, and the change and both moments are stored in bfloat16 (6
bytes per parameter and pair instead of 12):

* the change D is kept divided by ``lr_theta`` (a few units after a few steps, where
  bfloat16's 8-bit mantissa loses about 0.2% of it, against 5e-5 of the weights
  themselves, which bfloat16 could not hold: a step is smaller than its resolution there);
* the moments are rounded to bfloat16 (the same exponent range as float32: v, the
  squared gradients, does not underflow);
* Adam's first step reads nothing (D and the moments start at zero), and the last step
  writes no moments (no one reads them);
* all arithmetic is float32, as in the exact kernel, and each stored value is rounded to
  nearest once per step.

This applies to the convolutions that the compiled kernel (``native.c``) runs, where nearly
all the parameters are (99.8% of the 32x32 generator's); the BatchNorm scales and shifts and
the last layer's weights keep float32 state as in the exact kernel. Where the compiled kernel
cannot run (no C compiler, ``ADGAN_NATIVE=0``, ``native=False``, float64 generators, GPUs),
"mixed" runs the exact kernel. The scores differ from the exact kernel's by the rounding of
the stored state: tests check them against it, and docs/performance.md reports the effect
on detection.
"""

from __future__ import annotations

import torch

from adgan.nets.dcgan import Generator
from adgan.search import native
from adgan.search.config import SearchConfig
from adgan.search.fused import CACHE_BYTES, NATIVE_MAX_HW, FusedKernel


def mixed_layers(gen: Generator, lib) -> set[int]:
    """Indices (in ``generator_parameters`` order) of the convolution weights the compiled
    kernel runs, whose state "mixed" stores in bfloat16; empty without the library."""
    if lib is None:
        return set()
    width = native.vector_width(lib)
    out, j, side = set(), 0, 1
    for i, conv in enumerate(gen.convs):
        k = conv.kernel_size[0]
        N = conv.out_channels * k * k
        hw = side * side
        if hw <= NATIVE_MAX_HW and (i == 0 or k == 4) and N % width == 0:
            out.add(j)
        side = k if i == 0 else 2 * side
        j += 3 if i < len(gen.norms) else 1
    return out


def available(gen: Generator, cfg: SearchConfig) -> bool:
    """Whether "mixed" differs from "exact" here: a float32 generator on CPU with the
    compiled kernel allowed and built."""
    p = next(gen.parameters())
    if not (cfg.native and p.dtype == torch.float32 and p.device.type == "cpu"):
        return False
    return bool(mixed_layers(gen, native.load(torch.float32)))


def theta_scale(cfg: SearchConfig) -> float:
    """What the stored change D is a multiple of: lr_theta (1 when it is 0: D stays 0)."""
    return cfg.lr_theta if cfg.lr_theta > 0 else 1.0


class MixedKernel(FusedKernel):
    """``FusedKernel`` whose compiled convolutions keep each pair's weights as the shared
    ones plus a bfloat16 change, and their Adam moments in bfloat16 (see the module)."""

    def __init__(self, gen: Generator, capacity: int, cache_bytes: int = CACHE_BYTES):
        lib = native.load(torch.float32)
        self.mixed = mixed_layers(gen, lib)  # read by _state_dtype during __init__
        super().__init__(gen, capacity, cache_bytes)
        self._lib = lib
        self.scale = 1.0

    def _state_dtype(self, j: int, dtype: torch.dtype) -> torch.dtype:
        return torch.bfloat16 if j in self.mixed else dtype

    def run(self, xs, zs, cfg: SearchConfig, record: bool):
        if not cfg.native:
            raise ValueError("native: the mixed kernel runs on the compiled kernel only")
        self.scale = theta_scale(cfg)
        return super().run(xs, zs, cfg, record)

    def _first_layer_out(self, a: int, b: int, z: torch.Tensor) -> None:
        if 0 not in self.mixed:
            return super()._first_layer_out(a, b, z)
        cin = z.shape[1]
        shared = self.shared[0].view(cin, -1)
        native.forward_mixed(self._lib, z.view(b - a, cin, 1), shared,
                             self.theta[0][a:b].view(b - a, cin, -1), self.scale,
                             self.a1[a:b])  # fmt: skip

    def _forward_product(self, lib, j: int, hm: torch.Tensor, lo: int, hi: int, out) -> None:
        if j not in self.mixed:
            return super()._forward_product(lib, j, hm, lo, hi, out)
        cin = hm.shape[1]
        D = self.theta[j][lo:hi].view(hi - lo, cin, -1)
        native.forward_mixed(lib, hm, self.shared[j].view(cin, -1), D, self.scale, out)

    def _native_update(self, lib, j, a, b, dT, hin, d_in, shared, cfg) -> None:
        if j not in self.mixed:
            return super()._native_update(lib, j, a, b, dT, hin, d_in, shared, cfg)
        cin = self.theta[j].shape[1]
        args = [t[a:b].view(b - a, cin, -1) for t in (self.theta[j], self.m[j], self.v[j])]
        args += [dT[a:b], hin[a:b], None if d_in is None else d_in[a:b]]
        src = self.shared[j].view(cin, -1)
        N = args[0].shape[2]
        parts = min(torch.get_num_threads(), b - a)
        works = [self._ws(f"nwork{t}", (4 * N,)) for t in range(parts)]
        last = self.t == self._steps

        def fn(lo, hi, t):
            native.conv_backward_adam_mixed(
                lib, *[None if x is None else x[lo:hi] for x in args], work=works[t],
                shared=src, lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps, step=self.t,
                scale=self.scale, first=shared, last=last,
            )  # fmt: skip

        self._parallel(b - a, fn, parts)


def kernel_class(gen: Generator, cfg: SearchConfig) -> type[FusedKernel]:
    """The fused kernel for ``cfg.precision`` on this generator."""
    if cfg.precision == "mixed" and cfg.adapt_generator and available(gen, cfg):
        return MixedKernel
    return FusedKernel


__all__ = ["MixedKernel", "available", "kernel_class", "mixed_layers", "theta_scale"]
