"""The compiled CPU kernels (adgan.search.native) layer by layer against torch's operations.

For each layer of a DCGAN generator, on one thread and for a chunk of pairs with their own
weights (12 by default, as a worker holds at the paper's settings on 2 cores), the best of
several calls of:

* backward: the input gradient, the weight gradient and the Adam step. torch: as the
  search runs it without the compiled kernel (per-pair products with bmm, the gradient into
  a small buffer a few pairs at a time, torch's fused Adam); compiled: one
  ``conv_backward_adam`` pass. Its "GB/s" counts the 24 bytes per parameter and pair of
  reading and writing the weights and both moments.
* forward: the product of each pair's weights and ``fold``. torch: bmm in the faster
  orientation for the map size and col2im; compiled: ``forward`` and ``fold``.
* "mixed ms": the same compiled parts for ``precision="mixed"`` (each pair's weights the
  shared ones plus a bfloat16 change, bfloat16 moments; a step after the first and before
  the last), where the search runs them (``adgan.search.mixed``).

Their outputs are compared (float32, rtol 1e-3) before timing.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/native_layers.py            # 32x32 RGB, width 64
    OMP_WAIT_POLICY=PASSIVE python benchmarks/native_layers.py --size 28 --channels 1 --width 32
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_profile import best_seconds  # noqa: E402

from adgan.nets.dcgan import DCGANConfig, Generator
from adgan.search import mixed, native
from adgan.search.fused import CACHE_BYTES, DIRECT_MIN_HW, NATIVE_MAX_HW, adam_step


def add_generator_args(ap: argparse.ArgumentParser) -> None:
    """The generator's shape: 32x32 RGB, width 64, latent 256 by default (the paper's)."""
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--latent", type=int, default=256)


def generator_and_kernel(args):
    """The compiled float32 kernel (or exit: none could be built here) and a generator of
    ``add_generator_args``'s shape."""
    lib = native.load(torch.float32)
    if lib is None:
        raise SystemExit("the compiled kernel could not be built here (no C compiler?)")
    gen = Generator(
        DCGANConfig(
            image_size=args.size, channels=args.channels, latent_dim=args.latent, width=args.width
        )
    )
    return lib, gen


def layers(gen):
    """Per convolution: (i, name, cin, cout, k, N, HW, j), HW its input positions and j the
    index of its weights in ``generator_parameters`` order (``mixed.mixed_layers``'s)."""
    side, j = 1, 0
    for i, conv in enumerate(gen.convs):
        cin, cout, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
        name = f"{cin}x{side}x{side} -> {cout}x{2 * side if i else k}x{2 * side if i else k}"
        yield i, name, cin, cout, k, cout * k * k, side * side, j
        side = k if i == 0 else 2 * side
        j += 3 if i < len(gen.norms) else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_generator_args(ap)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    lib, gen = generator_and_kernel(args)
    P, step = args.pairs, torch.tensor(3.0)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread; generator {args.size}px x{args.channels}, "
          f"width {args.width}, latent {args.latent}; {P} pairs per call; "
          f"best of {args.reps}")  # fmt: skip
    print(f"{'layer':>22} {'part':>9} {'torch ms':>9} {'compiled ms':>11} {'speed-up':>8} "
          f"{'GFLOP/s':>8} {'GB/s':>6} {'mixed ms':>8}  where the search runs it")  # fmt: skip
    mixed_convs = mixed.mixed_layers(gen, lib)  # indices in generator_parameters order
    for i, name, cin, cout, k, N, HW, j in layers(gen):
        side = math.isqrt(HW)
        W = torch.randn(P, cin, N, generator=g) * 0.02
        m = torch.randn(P, cin, N, generator=g).abs() * 1e-3
        v = torch.randn(P, cin, N, generator=g).abs() * 1e-5
        h = torch.randn(P, cin, HW, generator=g).relu()
        dT = torch.randn(P, HW, N, generator=g)
        dcols = dT.transpose(1, 2).contiguous()
        # backward and Adam, torch: the search's slices of pairs sized for the cache
        sub = max(1, min(P, CACHE_BYTES // 2 // (2 * cin * N * 4)))
        gbuf = torch.empty(sub, cin, N)
        d_t = torch.empty(P, cin, HW)
        Wt, mt, vt = W.clone(), m.clone(), v.clone()

        def torch_bwd(Wt=Wt, mt=mt, vt=vt, h=h, dcols=dcols, d_t=d_t, gbuf=gbuf, sub=sub):
            for a in range(0, P, sub):
                b = min(P, a + sub)
                torch.bmm(Wt[a:b], dcols[a:b], out=d_t[a:b])
                torch.bmm(h[a:b], dcols[a:b].transpose(1, 2), out=gbuf[: b - a])
                adam_step([Wt[a:b]], [gbuf[: b - a]], [mt[a:b]], [vt[a:b]], step, 1e-4,
                       _Cfg)  # fmt: skip

        Wc, mc, vc = W.clone(), m.clone(), v.clone()
        d_c, work = torch.empty(P, cin, HW), torch.empty(4 * N)

        def comp_bwd(Wc=Wc, mc=mc, vc=vc, h=h, dT=dT, d_c=d_c, work=work):
            native.conv_backward_adam(lib, Wc, mc, vc, dT, h, d_c, work, None, 1e-4,
                                       _Cfg.betas, _Cfg.eps, 3)  # fmt: skip

        torch_bwd()
        comp_bwd()
        ok = torch.allclose(d_t, d_c, rtol=1e-3, atol=1e-4) and torch.allclose(
            Wt, Wc, rtol=1e-3, atol=1e-6
        )
        if not ok:
            raise SystemExit(f"layer {i}: the compiled backward pass disagrees with torch")
        tt, tc = best_seconds(torch_bwd, args.reps), best_seconds(comp_bwd, args.reps)
        flop = 4.0 * P * cin * N * HW
        where = "compiled" if HW <= NATIVE_MAX_HW else "torch"
        gbs = 24.0 * P * cin * N / tc / 1e9
        shared = W[0].clone()
        D = (torch.randn(P, cin, N, generator=g) * 2).bfloat16()
        m16, v16 = m.bfloat16(), v.bfloat16()

        def mixed_bwd(D=D, m16=m16, v16=v16, h=h, dT=dT, d_c=d_c, work=work, shared=shared):
            native.conv_backward_adam_mixed(
                lib, D, m16, v16, dT, h, d_c, work, shared, 1e-4, _Cfg.betas, _Cfg.eps, 3,
                1e-4, False, False,
            )  # fmt: skip

        is_mixed = j in mixed_convs
        tm = f"{best_seconds(mixed_bwd, args.reps) * 1e3:>8.2f}" if is_mixed else f"{'':>8}"
        print(f"{name:>22} {'backward':>9} {tt * 1e3:>9.2f} {tc * 1e3:>11.2f} {tt / tc:>8.2f} "
              f"{flop / tc / 1e9:>8.1f} {gbs:>6.1f} {tm}  {where}")  # fmt: skip
        if i > 0:  # the first layer's forward is a matrix-vector product, no fold
            S = 2 * side
            cols, cols_t = torch.empty(P, N, HW), torch.empty(P, HW, N)
            a_t, a_c = torch.empty(P, cout, S, S), torch.empty(P, cout, S, S)

            def torch_fwd(W=W, h=h, cols=cols, cols_t=cols_t, a_t=a_t, S=S, k=k, HW=HW):
                if HW >= DIRECT_MIN_HW:
                    torch.bmm(W.transpose(1, 2), h, out=cols)
                else:
                    torch.bmm(h.transpose(1, 2), W, out=cols_t)
                    cols.copy_(cols_t.transpose(1, 2))
                torch.ops.aten.col2im.out(cols, [S, S], [k, k], [1, 1], [1, 1], [2, 2], out=a_t)

            ct2 = torch.empty(P, HW, N)

            def comp_fwd(W=W, h=h, ct2=ct2, a_c=a_c, k=k):
                native.forward(lib, h, W, ct2)
                native.fold(lib, ct2, a_c, k)

            torch_fwd()
            comp_fwd()
            if not torch.allclose(a_t, a_c, rtol=1e-3, atol=1e-3):
                raise SystemExit(f"layer {i}: the compiled forward pass disagrees with torch")
            tt, tc = best_seconds(torch_fwd, args.reps), best_seconds(comp_fwd, args.reps)
            flop = 2.0 * P * cin * N * HW

            def mixed_fwd(h=h, shared=shared, D=D, ct2=ct2, a_c=a_c, k=k):
                native.forward_mixed(lib, h, shared, D, 1e-4, ct2)
                native.fold(lib, ct2, a_c, k)

            tm = f"{best_seconds(mixed_fwd, args.reps) * 1e3:>8.2f}" if is_mixed else f"{'':>8}"
            print(f"{name:>22} {'forward':>9} {tt * 1e3:>9.2f} {tc * 1e3:>11.2f} "
                  f"{tt / tc:>8.2f} {flop / tc / 1e9:>8.1f} {'':>6} {tm}  compiled")  # fmt: skip


class _Cfg:  # Adam's settings in the search (SearchConfig's defaults)
    betas = (0.5, 0.999)
    eps = 1e-8


if __name__ == "__main__":
    main()
