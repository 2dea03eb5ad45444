"""The search with a hand-written backward pass (``kernel="fused"``, the default): the
batched forward pass of ``batched.py`` in buffers allocated once, and each layer's Adam
step taken as soon as its gradient is known, a few pairs at a time, so that the weights
just read stay in the cache for their update (see ``FusedKernel``). On CPU the compiled
kernel of ``native.py`` runs a layer's two backward products and its update in one pass
where it is available and measured faster; torch's operations and its fused Adam
elsewhere. Tests check it against ``reference.py`` to float rounding.
"""

from __future__ import annotations

import math
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from adgan.nets.dcgan import Generator
from adgan.search import native
from adgan.search.batched import generator_parameters, pair_loss, seed_groups
from adgan.search.config import SearchConfig


def unfold_patches(
    dp: torch.Tensor, k: int, side: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.unfold(d, k, stride=2, padding=1)`` for an output of ``side`` x ``side`` patches,
    from ``dp``, d already padded by one on each side, as one strided copy (about twice as
    fast as unfold on CPU), into ``out`` (P, C*k*k, side*side) when given."""
    P, C = dp.shape[:2]
    s0, s1, s2, s3 = dp.stride()
    view = dp.as_strided(
        (P, C, k, k, side, side), (s0, s1, s2, s3, 2 * s2, 2 * s3), dp.storage_offset()
    )
    if out is None:
        return view.reshape(P, C * k * k, side * side)
    out.view(P, C, k, k, side, side).copy_(view)
    return out


# bytes of one layer's weights and gradients handled per Adam call on CPU: small enough to
# stay in the last-level cache between the gradient product and the update (on a 32 MB
# last-level cache: 16 MB measured 3% faster than 8 MB and 32 MB, 4 MB 10% slower)
CACHE_BYTES = 16 * 2**20


# input maps of at least this many positions use the product whose output fold takes as it
# is; smaller ones (4x4) the transposed product (measured on CPU: 7x7 and larger maps gain
# about a third on that layer's forward product, 4x4 maps lose about as much)
DIRECT_MIN_HW = 32

# layers whose input maps have at most this many positions run their backward pass and Adam
# in the compiled kernel (adgan.search.native); larger maps keep torch's products, which measured
# faster there (the 16x16 -> 32x32 layer of the 32x32 generator: 0.69 against 1.04 ms for 12
# pairs on one core; its 4x4 and 8x8 maps and the first layer gained 1.3x to 4x)
NATIVE_MAX_HW = 64


def adam_step(params, grads, exp_avgs, exp_avg_sqs, step: torch.Tensor, lr: float, cfg) -> None:
    """One fused Adam step (torch's own kernel, as torch.optim.Adam(fused=True) runs it) on
    lists of tensors whose moments are already at ``step - 1``."""
    torch._fused_adam_(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],
        [step] * len(params),
        lr=lr,
        beta1=cfg.betas[0],
        beta2=cfg.betas[1],
        weight_decay=0.0,
        eps=cfg.eps,
        amsgrad=False,
        maximize=False,
    )


class FusedKernel:
    """The search for a fixed number P of pairs with a hand-written backward pass.

    Parameters, Adam moments and activations live in buffers allocated once and reused for
    every chunk (fresh multi-megabyte allocations each step cost as much as the arithmetic
    on CPU). The search moves much memory: every pair owns its parameters and two Adam
    moments. So each layer's update runs right after that layer's backward pass, a few
    pairs at a time: the weight gradient goes into a small reused buffer that can stay in
    the cache, and the weights just read by the backward product can still be cached when
    Adam updates them (sized for that; the cache itself was not measured, only the time).
    The update is torch's fused Adam, or on CPU the compiled kernel of ``adgan.search.native``,
    which computes the layer's input gradient, weight gradient and update in one pass over
    each pair's weights (``_native_update``; layers whose input maps have at most
    ``NATIVE_MAX_HW`` positions). Either is exact because Adam is element-wise
    and a layer's gradient depends only on the weights above it (already consumed) and its
    own (read before they change).

    Until the first update every pair has the generator's own parameters: the first step
    (every step, when theta is not adapted) runs the forward pass and the input gradients
    as ordinary transposed convolutions and convolutions with shared weights, and each
    pair's copy of a parameter is written just before its first update. Work buffers for
    activations and gradients are made once and reused (``_ws``).
    """

    def __init__(self, gen: Generator, capacity: int, cache_bytes: int = CACHE_BYTES):
        self._gen = weakref.ref(gen)
        self.capacity = P = capacity
        self.cache_bytes = cache_bytes
        ref = generator_parameters(gen)
        p0 = ref[0]
        dev, dt = p0.device, p0.dtype
        # storage for up to ``capacity`` pairs; ``run`` works on views of the first n
        # each parameter's per-pair state in the generator's type, or ``_state_dtype``'s
        theta = [torch.empty((P, *p.shape), dtype=self._state_dtype(j, dt), device=dev)
                 for j, p in enumerate(ref)]  # fmt: skip
        latent = gen.config.latent_dim
        self._store = {
            "theta": theta,
            "m": [torch.empty_like(t) for t in theta],
            "v": [torch.empty_like(t) for t in theta],
            "z": torch.empty((P, latent), dtype=dt, device=dev),
            "z_grad": torch.empty((P, latent), dtype=dt, device=dev),
            "z_m": torch.empty((P, latent), dtype=dt, device=dev),
            "z_v": torch.empty((P, latent), dtype=dt, device=dev),
            # the first layer's output for the next step, made while its weights are cached
            "a1": torch.empty(
                (P, 1, ref[0].shape[1] * ref[0].shape[2] * ref[0].shape[3]), dtype=dt, device=dev
            ),
        }
        self._use(P)
        # pairs per Adam call for each parameter (on torch's operations, a gradient buffer of
        # that many pairs, made on first use: the compiled kernel needs none)
        self.sub = []
        for p in ref:
            per_pair = 2 * p.numel() * p.element_size()
            s = P if dev.type != "cpu" else max(1, min(P, cache_bytes // per_pair))
            self.sub.append(s)
        self.step = torch.zeros((), dtype=torch.float32, device=dev)
        self.bn: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._work: dict[str, torch.Tensor] = {}
        self.shared: list[torch.Tensor] = []
        self.groups = 0
        self.t = 0  # Adam's step
        self._steps = 0  # the search's steps (run)
        self._lib = False  # the compiled kernel: not looked up yet
        self.native = True  # use it where it runs (SearchConfig.native, set by run)
        self._pool: ThreadPoolExecutor | None = None  # threads for the compiled kernel
        self._pool_size = 0

    def _state_dtype(self, j: int, dtype: torch.dtype) -> torch.dtype:
        """The type of parameter j's per-pair state: the generator's (``precision="exact"``;
        ``adgan.search.mixed`` stores some in bfloat16)."""
        return dtype

    def _use(self, n: int) -> None:
        """Work on the first n pairs of the storage."""
        st = self._store
        self.P = n
        self.theta = [t[:n] for t in st["theta"]]
        self.m = [t[:n] for t in st["m"]]
        self.v = [t[:n] for t in st["v"]]
        self.z, self.z_grad = st["z"][:n], st["z_grad"][:n]
        self.z_m, self.z_v = st["z_m"][:n], st["z_v"][:n]
        self.a1 = st["a1"][:n]

    def _ws(self, name: str, shape, dtype: torch.dtype | None = None, zero: bool = False):
        """A work buffer kept for every step and chunk: the first prod(shape) elements of one
        tensor per name. (A fresh tensor of a few megabytes costs its page faults again on
        every step on CPU, as much time as some of the products that fill it.) ``zero``:
        zeroed once when made, for padded buffers whose border is never written; the pair
        axis comes first, so a shorter chunk's view keeps the same borders."""
        n = math.prod(shape)
        ref = self.z
        buf = self._work.get(name)
        if buf is None or buf.numel() < n:
            make = torch.zeros if zero else torch.empty
            buf = make(n, dtype=dtype or ref.dtype, device=ref.device)
            self._work[name] = buf
        return buf[:n].view(shape)

    @property
    def gen(self) -> Generator:
        return self._gen()  # a weak reference: the cache of kernels must not keep it alive

    @torch.no_grad()
    def forward(self, z: torch.Tensor, shared: bool, a1_ready: bool = False):
        """Returns the output and what the backward pass needs: per layer (input, ahat, y),
        all in work buffers that the next call overwrites. ``shared``: every pair still has
        the generator's own parameters (before the first update, or when theta is not
        adapted), so each layer is one transposed convolution with shared weights instead
        of a product per pair. ``a1_ready``: ``self.a1`` already holds the first layer's
        output for z."""
        gen, P = self.gen, self.P
        th = self.shared if shared else self.theta
        saved = []
        h = z
        j = 0
        for i, conv in enumerate(gen.convs):
            cin, cout, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
            W = th[j]
            j += 1
            inp = h
            if i == 0:
                if not a1_ready:
                    if shared:  # (P, Cin) @ (Cin, Cout*k*k)
                        torch.mm(h, W.view(cin, cout * k * k), out=self.a1.view(P, -1))
                    else:
                        self._first_layer_out(0, P, h)
                a = self.a1.view(P, cout, k, k)  # (P, Cout, s0, s0)
            elif shared:
                a = F.conv_transpose2d(h, W, stride=2, padding=1)
            else:
                a = self._transposed_conv(i, h, j - 1, cout, k)
            if i < len(gen.norms):
                ahat = self._ws(f"ahat{i}", a.shape)
                if self.groups:  # batch statistics of each image's seeds
                    G, C, HW = self.groups, a.shape[1], a.shape[2] * a.shape[3]
                    av = a.reshape(G, P // G, C, HW)
                    var, mean = torch.var_mean(av, dim=(1, 3), correction=0, keepdim=True)
                    inv = torch.rsqrt(var.add_(gen.norms[i].eps))  # (G, 1, C, 1)
                    torch.sub(av, mean, out=ahat.view(av.shape)).mul_(inv)
                else:
                    inv, mean = self.bn[i]
                    torch.sub(a, mean, out=ahat).mul_(inv)
                gamma, beta = th[j].view(-1, cout, 1, 1), th[j + 1].view(-1, cout, 1, 1)
                j += 2
                y = torch.addcmul(beta, ahat, gamma, out=self._ws(f"y{i}", a.shape))
                h = torch.clamp_min(y, 0, out=self._ws(f"h{i}", a.shape))
                saved.append((inp, ahat, y, inv))
            else:
                saved.append((inp, None, None, None))
                h = torch.tanh(a, out=self._ws(f"h{i}", a.shape))
        return h, saved

    def _transposed_conv(self, i: int, h: torch.Tensor, j: int, cout: int, k: int):
        """Layer i's transposed convolution (stride 2, padding 1) with each pair's weights:
        a product per pair and ``fold``; compiled where the kernel runs (measured faster on
        every layer of the 32x32 generator: 4x4 -> 8x8 maps 2.8 against 5.7 ms for 12 pairs
        on one core), else torch's bmm and col2im."""
        P, cin, side = self.P, h.shape[1], h.shape[-1]
        N = cout * k * k
        Wm = self.theta[j].view(P, cin, N)  # (P, Cin, Cout*k*k) (parameter j's state)
        hm = h.reshape(P, cin, side * side)
        a = self._ws(f"a{i}", (P, cout, 2 * side, 2 * side))
        cols_t = self._ws(f"cols_t{i}", (P, side * side, N))
        lib = self._native_lib(N, k)
        if lib is not None:

            def fwd(lo, hi, t):
                self._forward_product(lib, j, hm[lo:hi], lo, hi, cols_t[lo:hi])
                native.fold(lib, cols_t[lo:hi], a[lo:hi], k)

            self._parallel(P, fwd)
            return a
        cols = self._ws(f"cols{i}", (P, N, side * side))
        if side * side >= DIRECT_MIN_HW:
            # (Cout*k*k, Cin) @ (Cin, HW): the product lands in fold's layout
            torch.bmm(Wm.transpose(1, 2), hm, out=cols)
        else:
            # small maps: (HW, Cin) @ (Cin, Cout*k*k) is faster, even with the copy into
            # fold's layout
            torch.bmm(hm.transpose(1, 2), Wm, out=cols_t)
            cols.copy_(cols_t.transpose(1, 2))
        torch.ops.aten.col2im.out(cols, [2 * side, 2 * side], [k, k], [1, 1], [1, 1], [2, 2], out=a)
        return a

    @torch.no_grad()
    def backward_update(self, out, x, saved, cfg: SearchConfig, shared: bool) -> None:
        """Gradients of sum_p ||out_p - x_p||^2 and the Adam steps on theta and z, each layer's
        as soon as its gradient is known; leaves the first layer's output for the updated z
        and weights in ``a1``. ``shared``: the pairs still share the generator's parameters
        (``forward``); with ``adapt_generator`` this is the first step, whose update writes
        each pair's parameters from the shared ones and starts the moments."""
        gen, P = self.gen, self.P
        adapt = cfg.adapt_generator
        th = self.shared if shared else self.theta
        lr = cfg.lr_theta

        def update(idx, a, b, grad):
            if shared:
                self._first_adam(idx, a, b, grad, cfg)
            else:
                adam_step([self.theta[idx][a:b]], [grad], [self.m[idx][a:b]], [self.v[idx][a:b]],
                       self.step, lr, cfg)  # fmt: skip

        pads = {}

        def padded(i, shape):
            """dL/da of layer i goes inside a zero border, where the patches read it."""
            P_, C, H, W = shape
            pads[i] = self._ws(f"dpad{i}", (P_, C, H + 2, W + 2), zero=True)
            return pads[i][:, :, 1:-1, 1:-1]

        last = len(gen.convs) - 1
        d = padded(last, out.shape)  # dL/da of the last layer: 2 (out - x) (1 - out^2)
        torch.sub(out, x, out=d).mul_(2)
        d.mul_(torch.mul(out, out, out=self._ws("tanh_d", out.shape)).neg_().add_(1))
        j = len(th)
        for i in range(last, -1, -1):
            conv = gen.convs[i]
            cin, cout, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
            inp, ahat, y, inv = saved[i]
            if i < len(gen.norms):  # BatchNorm and ReLU after this convolution
                j -= 2
                # the mask in d's own type: a boolean one is converted on every product
                # (a copy as large as d; the same values)
                dy = d.mul_(torch.gt(y, 0, out=self._ws(f"mask{i}", y.shape)))
                if adapt:
                    prod = torch.mul(dy, ahat, out=self._ws("prod", dy.shape))
                    g_gamma, g_beta = prod.sum((2, 3)), dy.sum((2, 3))
                gamma = th[j].view(-1, cout, 1, 1)
                if self.groups:
                    # through the seeds' statistics: with u = dL/d ahat = dy * gamma,
                    # dL/da = inv * (u - mean(u) - ahat * mean(u * ahat)), means per image
                    # and channel over its seeds and positions
                    u = torch.mul(dy, gamma, out=self._ws("u", dy.shape))
                    G, C = self.groups, dy.shape[1]
                    shape5 = (G, P // G, C, dy.shape[2], dy.shape[3])
                    u5, ahat5 = u.view(shape5), ahat.view(shape5)
                    m_u = u5.mean((1, 3, 4), keepdim=True)
                    m_ua = torch.mul(u, ahat, out=self._ws("prod", u.shape)).view(shape5)
                    m_ua = m_ua.mean((1, 3, 4), keepdim=True)
                    dest = d if i == 0 else padded(i, dy.shape)
                    dest5 = dest.view(shape5)
                    torch.sub(u5, m_u, out=dest5).addcmul_(ahat5, m_ua, value=-1)
                    dest5.mul_(inv.view(G, 1, C, 1, 1))
                    d = dest
                else:
                    scale = gamma * self.bn[i][0]  # d ahat / d a = inv_std
                    if i == 0:
                        d = dy.mul_(scale)
                    else:
                        d = torch.mul(dy, scale, out=padded(i, dy.shape))
                if adapt:  # after d: that used the scale before this step's update
                    update(j, 0, P, g_gamma)
                    update(j + 1, 0, P, g_beta)
            j -= 1
            W = th[j]
            N = cout * k * k
            # the compiled kernel: input gradient, weight gradient and Adam in one pass
            HW = 1 if i == 0 else inp.shape[-1] ** 2
            lib = self._native_lib(N, k, HW) if adapt else None
            if i == 0:
                da = d.reshape(P, N)  # (P, Cout*k*k)
                if shared:  # every pair's z gradient in one product, before any update
                    torch.mm(da, W.view(cin, N).t(), out=self.z_grad)
                d_in = None
                if lib is not None:  # z's gradient is the input gradient, z (x) da the weights'
                    dT, hin = da.view(P, 1, N), inp.view(P, cin, 1)
                    nat_in = None if shared else self.z_grad.view(P, cin, 1)
            else:
                side = inp.shape[-1]
                if adapt:
                    if lib is not None:
                        dT = self._ws(f"dT{i}", (P, side * side, N))  # (P, HW, Cout*k*k)
                        dp = pads[i]

                        def gather(lo, hi, t, lib=lib, dp=dp, dT=dT, k=k):
                            native.patches(lib, dp[lo:hi], k, dT[lo:hi])

                        self._parallel(P, gather)
                    else:
                        dcols = self._ws(f"dcols{i}", (P, N, side * side))
                        unfold_patches(pads[i], k, side, out=dcols)  # (P, Cout*k*k, HW)
                    hin = inp.reshape(P, cin, side * side)  # (P, Cin, HW)
                if shared:
                    # the input gradient of a transposed convolution is a convolution; on
                    # the padded map it needs no padding of its own
                    d_in = F.conv2d(pads[i], W, stride=2)
                else:
                    d_in = self._ws(f"din{i}", (P, cin, side * side))
                nat_in = None if shared else d_in
            s = self.sub[j]
            for a in range(0, P, s if adapt else P):
                b = min(P, a + s) if adapt else P
                if lib is not None:
                    self._native_update(lib, j, a, b, dT, hin, nat_in, shared, cfg)
                # the input gradient first: it needs this layer's weights before the update
                elif not shared:
                    if i == 0:
                        torch.bmm(da[a:b].unsqueeze(1), W[a:b].view(b - a, cin, -1).transpose(1, 2),
                                  out=self.z_grad[a:b].unsqueeze(1))  # fmt: skip
                    else:
                        torch.bmm(W[a:b].view(b - a, cin, N), dcols[a:b], out=d_in[a:b])
                if adapt and lib is None:
                    g = self._ws(f"grad{j}", (b - a, *self.theta[j].shape[1:]))
                    gm = g.view(b - a, cin, N)
                    if i == 0:  # per-pair outer product z (x) da
                        torch.mul(inp[a:b].unsqueeze(2), da[a:b].unsqueeze(1), out=gm)
                    else:
                        torch.bmm(hin[a:b], dcols[a:b].transpose(1, 2), out=gm)
                    update(j, a, b, g)
                if i == 0:  # z's step for these pairs, then their next first-layer output
                    z = self.z[a:b]
                    adam_step([z], [self.z_grad[a:b]], [self.z_m[a:b]], [self.z_v[a:b]],
                           self.step, cfg.lr_z, cfg)  # fmt: skip
                    if adapt:
                        self._first_layer_out(a, b, z)
                    else:
                        torch.mm(z, self.shared[0].view(cin, -1),
                                 out=self.a1[a:b].view(b - a, -1))  # fmt: skip
            if d_in is not None:
                d = d_in.view(P, cin, side, side)

    def _first_layer_out(self, a: int, b: int, z: torch.Tensor) -> None:
        """The first layer's output for pairs a:b from their latents z (b - a, Cin) and their
        own weights, into ``a1``."""
        W0 = self.theta[0]
        torch.bmm(z.unsqueeze(1), W0[a:b].view(b - a, z.shape[1], -1), out=self.a1[a:b])

    def _forward_product(self, lib, j: int, hm: torch.Tensor, lo: int, hi: int, out) -> None:
        """The compiled forward product of pairs lo:hi with their own copy of parameter j."""
        W = self.theta[j]
        native.forward(lib, hm, W[lo:hi].view(hi - lo, hm.shape[1], -1), out)

    def _native_lib(self, N: int, k: int, HW: int = 0):
        """The compiled kernel for a layer with N = Cout*k*k, or None where torch's operations
        run it. ``HW``: the layer's input positions, for the backward pass (which runs in the
        kernel only up to ``NATIVE_MAX_HW`` of them); 1 for the first layer, the others
        have DCGAN's 4x4 kernels (the kernel's fold and patches are written for them)."""
        if not self.native or self.z.device.type != "cpu" or HW > NATIVE_MAX_HW:
            return None
        if HW != 1 and k != 4:
            return None
        if self._lib is False:  # not looked up yet
            self._lib = native.load(self.z.dtype)
        lib = self._lib
        return lib if lib is not None and N % native.vector_width(lib) == 0 else None

    def _parallel(self, n: int, fn, parts: int | None = None) -> None:
        """``fn(lo, hi, t)`` over pairs lo:hi covering 0:n, split into ``parts`` (default: this
        worker's torch threads, at most n) run on a pool of threads of its own (the compiled
        kernel is single-threaded and releases the GIL), t the part's index."""
        if parts is None:
            parts = min(torch.get_num_threads(), n)
        if parts <= 1:
            fn(0, n, 0)
            return
        if self._pool is None or self._pool_size < parts:
            self._pool = ThreadPoolExecutor(parts, thread_name_prefix="adgan-native")
            self._pool_size = parts

        def part(lo, hi, t):
            torch.set_flush_denormal(True)  # per thread, as in flush_denormals
            fn(lo, hi, t)

        bounds = np.linspace(0, n, parts + 1).round().astype(int)
        futures = [self._pool.submit(part, bounds[t], bounds[t + 1], t) for t in range(parts)]
        for f in futures:
            f.result()

    def _native_update(self, lib, j, a, b, dT, hin, d_in, shared, cfg) -> None:
        """Pairs a:b of parameter j (a convolution's weights): the input gradient into d_in
        (unless None), the weight gradient and the Adam step, in the compiled kernel."""
        cin = self.theta[j].shape[1]
        args = [t[a:b].view(b - a, cin, -1) for t in (self.theta[j], self.m[j], self.v[j])]
        args += [dT[a:b], hin[a:b], None if d_in is None else d_in[a:b]]
        src = self.shared[j].view(cin, -1) if shared else None
        N = args[0].shape[2]
        parts = min(torch.get_num_threads(), b - a)
        works = [self._ws(f"nwork{t}", (4 * N,)) for t in range(parts)]  # made here, once

        def fn(lo, hi, t):
            native.conv_backward_adam(
                lib, *[None if x is None else x[lo:hi] for x in args], work=works[t],
                shared=src, lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps, step=self.t,
                last=self.t == self._steps,
            )  # fmt: skip

        self._parallel(b - a, fn, parts)  # the parts the work buffers were made for

    def _first_adam(self, idx: int, a: int, b: int, grad: torch.Tensor, cfg) -> None:
        """Adam's first step for pairs a:b of parameter idx: their parameters start as the
        shared ones, their moments at zero, just before the update reads them (still in
        the cache). The step's closed form (m = (1 - b1) g, v = (1 - b2) g^2, theta =
        shared - lr g / (|g| + eps)) in torch's element-wise operations was a third faster
        on one layer in isolation but measured no faster over the whole search."""
        self.theta[idx][a:b].copy_(self.shared[idx].expand_as(grad))
        self.m[idx][a:b].zero_()
        self.v[idx][a:b].zero_()
        adam_step([self.theta[idx][a:b]], [grad], [self.m[idx][a:b]], [self.v[idx][a:b]],
               self.step, cfg.lr_theta, cfg)  # fmt: skip

    def run(self, xs: torch.Tensor, zs: torch.Tensor, cfg: SearchConfig, record: bool):
        if xs.shape[0] > self.capacity:
            raise ValueError(f"{xs.shape[0]} pairs exceed this kernel's {self.capacity}")
        self._use(xs.shape[0])
        # running-statistics normalisation per BatchNorm layer: (inv_std, mean) as (1, C, 1, 1),
        # and the shared parameters, read afresh in case the generator changed since the
        # buffers were made
        gen = self.gen
        self.bn = [
            (
                torch.rsqrt(n.running_var + n.eps)[None, :, None, None],
                n.running_mean[None, :, None, None],
            )
            for n in gen.norms
        ]
        self.shared = [p.detach().contiguous() for p in generator_parameters(gen)]
        # "seeds": the chunk holds whole images, each a group of n_seeds consecutive pairs
        self.groups = seed_groups(xs.shape[0], cfg)
        self.native = cfg.native
        self._steps = cfg.steps
        with torch.no_grad():
            self.z.copy_(zs)
            self.z_m.zero_()
            self.z_v.zero_()
        zp, lp = [], []
        for t in range(1, cfg.steps + 1):  # a fresh Adam for every chunk
            self.step.fill_(t)
            self.t = t
            shared = t == 1 or not cfg.adapt_generator
            out, saved = self.forward(self.z, shared, a1_ready=t > 1)
            if record:
                zp.append(self.z.cpu().numpy().copy())
                lp.append(pair_loss(out, xs).cpu().numpy())
            self.backward_update(out, xs, saved, cfg, shared)
            del saved
        shared = cfg.steps == 0 or not cfg.adapt_generator
        out, _ = self.forward(self.z, shared, a1_ready=cfg.steps > 0)
        final = pair_loss(out, xs).cpu().numpy()
        self.shared = []
        zf = self.z.detach().cpu().numpy().copy()
        if record:
            zp.append(zf.copy())
            lp.append(final)
            return final, zf, np.stack(zp), np.stack(lp)
        return final, zf
