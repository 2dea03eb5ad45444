"""ADGAN's latent search (Algorithm 1 of Deecke et al. 2018), batched over images and seeds.

For every image x and seed j, starting from z_j,0 ~ p_z and the trained generator parameters
theta, take k simultaneous Adam steps

    z_j,t     <- Adam_z(z_j,t-1,     grad_z     l(g_theta_j,t-1(z_j,t-1), x))
    theta_j,t <- Adam_theta(theta_j,t-1, grad_theta l(g_theta_j,t-1(z_j,t-1), x))

with l the squared L2 norm of the difference, then return the per-seed losses
l(g_theta_j,k(z_j,k), x) after the k-th update; the score is their mean over seeds. Each
(image, seed) pair owns a copy of theta and its own Adam moments, so theta is reset to the
trained value for every image.

BatchNorm during the search (``bn_stats``): by default (``"running"``) every BatchNorm layer
normalises with the running statistics estimated during training, as a generator in eval
mode does, and the seeds are independent. With ``"seeds"`` it normalises with the batch
statistics of the image's n_seeds searches (per channel, over seeds and positions), as a
generator left in training mode does when those seeds form its batch; the seeds of an image
are then coupled through the statistics, and the gradient of the summed loss flows through
them. Either way the affine scale and shift are part of theta, adapted per seed like the
convolution weights, and the running statistics themselves stay fixed. The paper does not
say which; docs/results.md compares them on the training split.

Three implementations share this contract:

* ``kernel="fused"`` (the default, ``"auto"``): the parameters of all pairs in a chunk are
  stacked into tensors with a leading pair axis; each transposed convolution runs as one
  batched matrix product (per-pair weights) followed by ``fold``; the backward pass is
  written by hand into buffers allocated once, and Adam updates each layer as soon as its
  gradient is known, a few pairs at a time (see ``FusedKernel``): on CPU a compiled kernel
  (``adgan._native``) does a layer's two backward products and its update in one pass where
  it is available, torch's operations and fused Adam elsewhere. Adam is
  element-wise and the loss is a sum over pairs whose terms depend on disjoint parameters, so
  this is exactly an independent Adam per pair.
* ``kernel="bmm"``: the same forward pass with autograd computing the backward pass.
* ``kernel="loop"``: the plain reference, one deep copy of the generator and two
  ``torch.optim.Adam`` per (image, seed). Tests check all three agree.

Memory is bounded by ``max_pairs``: the (image, seed) pairs are processed in chunks of at
most that many, so the peak does not grow with the number of images.
"""

from __future__ import annotations

import copy
import math
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from adgan import _native
from adgan.errors import ConfigError
from adgan.nets.dcgan import Generator
from adgan.torch_utils import flush_denormals

KERNELS = ("auto", "fused", "bmm", "loop")
BN_STATS = ("running", "seeds")


@dataclass(frozen=True)
class SearchConfig:
    """Hyper-parameters of the search; the defaults are the paper's (Section 4.2)."""

    n_seeds: int = 64
    steps: int = 5
    lr_z: float = 0.25
    lr_theta: float = 5e-5
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-8
    adapt_generator: bool = True
    kernel: str = "auto"
    max_pairs: int | None = None  # pairs in flight at once; None = from the memory budget
    memory_mb: float = 512.0  # budget of the per-pair state in flight at once
    # CPU threads of the fused kernel (at most; the memory budget may allow fewer), each
    # running its own chunks with its share of torch's threads; None = one per torch
    # thread, while the budget gives each at least 8 pairs. Other kernels and devices use
    # torch's own threading.
    workers: int | None = None
    # BatchNorm statistics during the search: "running" (the estimates kept from training;
    # each seed independent) or "seeds" (the batch statistics of an image's seeds, as a
    # generator left in training mode computes them when those seeds form its batch; a
    # chunk then holds whole images, at least one image's seeds whatever memory_mb says)
    bn_stats: str = "running"
    # the fused kernel on CPU: each layer's backward products and Adam step in one compiled
    # pass (adgan._native, built on first use with the machine's C compiler) where it is
    # available and measured faster; False, or no compiler, or ADGAN_NATIVE=0: torch's
    # operations alone. Same scores to float rounding.
    native: bool = True

    def validate(self) -> SearchConfig:
        if self.n_seeds < 1 or self.steps < 0:
            raise ConfigError(
                f"n_seeds must be >= 1 and steps >= 0, got {self.n_seeds}, {self.steps}"
            )
        if self.bn_stats not in BN_STATS:
            raise ConfigError(f"bn_stats: expected one of {BN_STATS}, got {self.bn_stats!r}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel: expected one of {KERNELS}, got {self.kernel!r}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1 or None, got {self.workers}")
        return self


@dataclass
class SearchResult:
    """Per-image outcome. ``seed_losses`` is (n, n_seeds); ``z`` the final latents."""

    seed_losses: np.ndarray
    z: np.ndarray | None = None
    # (n, n_seeds): log N(z_j,k; 0, I) per seed, kept even when z is not
    seed_log_prior: np.ndarray | None = None
    # (steps + 1, n, n_seeds, latent) and (steps + 1, n, n_seeds), when record=True
    z_path: np.ndarray | None = None
    loss_path: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def loss(self) -> np.ndarray:
        return self.seed_losses.mean(axis=1)

    def prior_log_density(self) -> np.ndarray:
        """Mean over seeds of log N(z_j,k; 0, I): Section 4.3's prior-likelihood score."""
        logp = self.seed_log_prior if self.seed_log_prior is not None else _log_prior(self.z)
        return logp.mean(axis=1)


def _log_prior(z: np.ndarray) -> np.ndarray:
    """log N(z; 0, I) over the last axis."""
    d = z.shape[-1]
    return -0.5 * (z.astype(np.float64) ** 2).sum(-1) - 0.5 * d * math.log(2 * math.pi)


def generator_parameters(gen: Generator) -> list[torch.Tensor]:
    """theta in the order the batched forward consumes it: conv weight, then norm scale and
    shift, layer by layer."""
    out: list[torch.Tensor] = []
    for i, conv in enumerate(gen.convs):
        out.append(conv.weight)
        if i < len(gen.norms):
            out += [gen.norms[i].weight, gen.norms[i].bias]
    return out


def batched_generate(
    gen: Generator, params: list[torch.Tensor], z: torch.Tensor, groups: int = 0
) -> torch.Tensor:
    """g_theta_p(z_p) for P pairs at once; params[i] is generator_parameters(gen)[i] with a
    leading pair axis. BatchNorm uses the running statistics (eval mode), or with
    ``groups`` > 0 the batch statistics of each of that many groups of consecutive pairs."""
    P = z.shape[0]
    it = iter(params)
    h = z
    n_layers = len(gen.convs)
    for i, conv in enumerate(gen.convs):
        W = next(it)  # (P, Cin, Cout, k, k)
        cin, cout, k = conv.in_channels, conv.out_channels, conv.kernel_size[0]
        Wm = W.reshape(P, cin, cout * k * k)  # (P, Cin, Cout*k*k)
        if i == 0:  # 1x1 input: the first layer is a per-pair linear map
            h = torch.bmm(h.unsqueeze(1), Wm).reshape(P, cout, k, k)  # (P, Cout, s0, s0)
        else:
            side = h.shape[-1]
            cols = torch.bmm(
                Wm.transpose(1, 2), h.reshape(P, cin, side * side)
            )  # (P, Cout*k*k, HW)
            h = F.fold(
                cols, (2 * side, 2 * side), kernel_size=k, stride=2, padding=1
            )  # (P, Cout, 2H, 2W)
        if i < n_layers - 1:
            bn = gen.norms[i]
            gamma, beta = next(it), next(it)  # (P, Cout) each
            if groups:
                hg = h.reshape(groups, P // groups, *h.shape[1:])
                var, mean = torch.var_mean(hg, dim=(1, 3, 4), correction=0, keepdim=True)
                h = ((hg - mean) * torch.rsqrt(var + bn.eps)).reshape(h.shape)
                h = torch.relu(h * gamma[:, :, None, None] + beta[:, :, None, None])
                continue
            inv = torch.rsqrt(bn.running_var + bn.eps)  # (Cout,)
            scale = gamma * inv  # (P, Cout)
            shift = beta - bn.running_mean * scale  # (P, Cout)
            h = torch.relu(torch.addcmul(shift[:, :, None, None], h, scale[:, :, None, None]))
    return torch.tanh(h)


def pair_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of the difference, one value per pair: (P, C, H, W) -> (P,)."""
    return (recon - x).pow(2).flatten(1).sum(1)


def auto_max_pairs(gen: Generator, cfg: SearchConfig, kernel: str = "bmm") -> int:
    if cfg.max_pairs is not None:
        return max(1, int(cfg.max_pairs))
    n_params = sum(p.numel() for p in generator_parameters(gen))
    # with autograd: parameters, gradients, two Adam moments and saved tensors, about 6
    # copies; the fused kernel keeps parameters and moments only (gradients stay small)
    copies = 3 if kernel == "fused" else 6
    per_pair = copies * n_params * 4 + 64 * gen.config.channels * gen.config.image_size**2
    return max(1, int(cfg.memory_mb * 2**20 // per_pair))


def latent_search(
    gen: Generator,
    x: torch.Tensor,
    z0: torch.Tensor,
    cfg: SearchConfig = SearchConfig(),
    record: bool = False,
    progress: Callable[[int], None] | None = None,
    keep_z: bool = True,
) -> SearchResult:
    """Run the search for images x (n, C, H, W) from the seeds z0 (n_seeds, latent).

    The same z0 serves every image, so an image's score depends on that image alone (and
    not on the others in its batch). ``progress(k)`` is called with the number of images
    finished after each chunk. ``keep_z=False`` drops the final latents (n x n_seeds x
    latent values, the one part of the result that grows large) and keeps only their
    log-density under the prior.
    """
    cfg = cfg.validate()
    if z0.shape[0] != cfg.n_seeds:
        raise ConfigError(f"z0 has {z0.shape[0]} seeds, the config asks for {cfg.n_seeds}")
    gen = gen.eval()
    kernel = "fused" if cfg.kernel == "auto" else cfg.kernel
    dev = next(gen.parameters()).device
    dtype = next(gen.parameters()).dtype
    # the search writes its own gradients: the inputs' autograd history plays no part (and
    # the worker threads do not see the caller's grad mode)
    x = x.detach().to(dev, dtype)
    z0 = z0.detach().to(dev, dtype)
    n, S = x.shape[0], cfg.n_seeds
    total = n * S
    losses = np.empty(total)
    z_final = np.empty((total, z0.shape[1])) if keep_z else None
    log_prior = np.empty(total)
    z_path = np.empty((cfg.steps + 1, total, z0.shape[1])) if record else None
    loss_path = np.empty((cfg.steps + 1, total)) if record else None
    budget = auto_max_pairs(gen, cfg, kernel) if kernel != "loop" else S
    threads = torch.get_num_threads()
    # an image's seeds share their statistics under "seeds": chunks of whole images
    unit = S if cfg.bn_stats == "seeds" else 1
    chunk, workers = _plan(total, unit, budget, _workers(cfg, kernel, dev, budget, threads))
    intra = max(1, threads // workers)  # torch threads of each worker
    # buffers are kept with the generator between calls: scoring a stream chunk by chunk
    # (rank) then allocates them once, instead of once per chunk
    kernels = _KERNELS.setdefault(gen, {}) if kernel == "fused" else {}
    if kernel == "fused":  # free the buffers of workers this call does not use
        for key in [k for k in kernels if k[:2] == (dtype, dev) and k[2] >= workers]:
            del kernels[key]

    cache = _CACHE_BYTES // workers  # the workers share the last-level cache

    def run(xs, zs, worker):
        if kernel == "fused":
            # one kernel per dtype, device and worker, as large as the largest chunk so far:
            # the last, shorter chunk of a call runs on a view of the same buffers
            key = (xs.dtype, xs.device, worker)
            old = kernels.get(key)
            if old is None or old.capacity < chunk or old.cache_bytes != cache:
                kernels.pop(key, None)  # free the old buffers before making larger ones
                kernels[key] = FusedKernel(gen, chunk, cache_bytes=cache)
            return kernels[key].run(xs, zs, cfg, record)
        if kernel == "bmm":
            return _search_pairs_bmm(gen, xs, zs, cfg, record)
        loop = _search_seeds_loop if cfg.bn_stats == "seeds" else _search_pairs_loop
        return loop(gen, xs, zs, cfg, record)

    left = np.full(n, S)  # pairs of each image not yet searched
    with flush_denormals():
        for start, stop, out in _chunks(run, x, z0, S, total, chunk, workers, intra):
            losses[start:stop] = out[0]
            log_prior[start:stop] = _log_prior(out[1])
            if keep_z:
                z_final[start:stop] = out[1]
            if record:
                z_path[:, start:stop] = out[2]
                loss_path[:, start:stop] = out[3]
            # chunks may finish out of order with several workers: an image is done when
            # all its pairs are
            images, counts = np.unique(np.arange(start, stop) // S, return_counts=True)
            left[images] -= counts
            finished = int((left[images] == 0).sum())
            if progress is not None and finished:
                progress(finished)
    res = SearchResult(
        losses.reshape(n, S),
        z_final.reshape(n, S, -1) if keep_z else None,
        seed_log_prior=log_prior.reshape(n, S),
    )
    if record:
        res.z_path = z_path.reshape(cfg.steps + 1, n, S, -1)
        res.loss_path = loss_path.reshape(cfg.steps + 1, n, S)
    return res


def _plan(total: int, unit: int, budget: int, workers: int) -> tuple[int, int]:
    """(pairs per chunk, workers). A chunk is a multiple of ``unit``, at least one unit,
    and as large as a share of the budget allows (``budget`` pairs in flight over all
    workers); the number of chunks is then rounded up to a multiple of the workers and the
    chunks made of equal size, so that no worker is left with a long last chunk while the
    others wait. No more workers than there are chunks, or than the budget holds chunks at
    once (a chunk of whole images can exceed a share of the budget, and a single one may
    exceed the whole budget)."""
    units = total // unit
    per = max(1, budget // workers // unit)
    n = -(-units // per)  # chunks needed
    n = -(-n // workers) * workers
    chunk = -(-units // n) * unit
    return chunk, max(1, min(workers, -(-total // chunk), budget // chunk))


# pairs a worker should hold at least: fewer per chunk measured slower on CPU (2 per worker
# 30% and 4 per worker 10% slower than 12, on the 32x32 RGB width-64 generator)
_MIN_PAIRS_PER_WORKER = 8


def _workers(cfg: SearchConfig, kernel: str, dev: torch.device, budget: int, threads: int):
    """Threads running chunks: the fused kernel on CPU runs one chunk per worker thread, as
    many workers as torch has threads, but no more than the memory budget can give at least
    ``_MIN_PAIRS_PER_WORKER`` pairs each (the others' threads then go to each worker's
    operations)."""
    if kernel != "fused" or dev.type != "cpu":
        return 1
    if cfg.workers:
        return cfg.workers
    return max(1, min(threads, budget // _MIN_PAIRS_PER_WORKER))


def _chunks(run, x, z0, S, total, chunk, workers, intra):
    """Yield (start, stop, run(xs, zs, worker)) for consecutive ranges of the flattened
    (image, seed) pairs; with several workers, in the order they finish."""

    def job(start, worker):
        stop = min(total, start + chunk)
        pairs = torch.arange(start, stop, device=x.device)
        return start, stop, run(x[pairs // S], z0[pairs % S], worker)  # x, z0 per pair

    starts = range(0, total, chunk)
    if workers == 1:
        for start in starts:
            yield job(start, 0)
        return
    yield from _threaded(job, starts, workers, intra)


def _threaded(job, starts, workers: int, intra: int):
    """Run ``job(start, worker)`` for every start on ``workers`` threads, each with
    ``intra`` torch threads of its own, and yield the results as they come.

    On CPU the search's operations are many mid-sized products and element-wise passes,
    which torch splits across its threads with a barrier after each; independent chunks,
    one per thread, keep both cores busy and let one thread's memory-bound Adam overlap
    another's products (docs/performance.md has the measurement). torch releases the GIL
    inside its operations. The first error stops the others after their current chunk and
    is raised here."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for start in starts:
        todo.put(start)
    done: queue.SimpleQueue = queue.SimpleQueue()
    halt = threading.Event()
    threads_before = torch.get_num_threads()

    def work(worker):
        try:
            torch.set_num_threads(intra)  # this thread's own setting
            torch.set_flush_denormal(True)  # a per-thread register, as in flush_denormals
            while not halt.is_set():
                try:
                    start = todo.get_nowait()
                except queue.Empty:
                    return
                with torch.no_grad():  # grad mode is per thread
                    done.put(job(start, worker))
        except BaseException as e:  # handed to the caller's thread
            halt.set()
            done.put(e)

    threads = [
        threading.Thread(target=work, args=(w,), name=f"adgan-search-{w}", daemon=True)
        for w in range(workers)
    ]
    for t in threads:
        t.start()
    try:
        for _ in starts:
            item = done.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        try:
            for t in threads:
                t.join()
        finally:  # a worker's setting also changes the default
            torch.set_num_threads(threads_before)


def _groups(P: int, cfg: SearchConfig) -> int:
    """Images in a chunk of P pairs under "seeds" statistics (0: running statistics)."""
    if cfg.bn_stats != "seeds":
        return 0
    if P % cfg.n_seeds:
        raise ValueError(f"{P} pairs are not whole images of {cfg.n_seeds} seeds")
    return P // cfg.n_seeds


def _search_pairs_bmm(gen, xs, zs, cfg: SearchConfig, record: bool):
    """One chunk of P pairs: stacked parameters, batched forward, fused Adam."""
    P = xs.shape[0]
    with torch.no_grad():
        theta = [
            p.detach().unsqueeze(0).repeat(P, *([1] * p.dim())) for p in generator_parameters(gen)
        ]
    z = zs.detach().clone()
    z.requires_grad_(True)
    fused = {"fused": True} if xs.device.type in ("cpu", "cuda") else {}
    opt_z = torch.optim.Adam([z], lr=cfg.lr_z, betas=cfg.betas, eps=cfg.eps, **fused)
    opt_t = None
    if cfg.adapt_generator:
        for t in theta:
            t.requires_grad_(True)
        opt_t = torch.optim.Adam(theta, lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps, **fused)
    groups = _groups(P, cfg)
    zp, lp = [], []
    for _ in range(cfg.steps):
        loss = pair_loss(batched_generate(gen, theta, z, groups), xs)  # (P,)
        if record:
            zp.append(z.detach().cpu().numpy().copy())
            lp.append(loss.detach().cpu().numpy())
        opt_z.zero_grad(set_to_none=True)
        if opt_t is not None:
            opt_t.zero_grad(set_to_none=True)
        # each pair's loss depends on its own z and theta only (with "seeds" statistics, also
        # on its image's other seeds): the gradient of the sum is what each pair's Adam takes
        loss.sum().backward()
        opt_z.step()
        if opt_t is not None:
            opt_t.step()
    with torch.no_grad():
        final = pair_loss(batched_generate(gen, theta, z, groups), xs)
    zf = z.detach().cpu().numpy()
    if record:
        zp.append(zf.copy())
        lp.append(final.cpu().numpy())
        return final.cpu().numpy(), zf, np.stack(zp), np.stack(lp)
    return final.cpu().numpy(), zf


_KERNELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _patches(dp: torch.Tensor, k: int, side: int, out: torch.Tensor | None = None) -> torch.Tensor:
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
_CACHE_BYTES = 16 * 2**20


# input maps of at least this many positions use the product whose output fold takes as it
# is; smaller ones (4x4) the transposed product (measured on CPU: 7x7 and larger maps gain
# about a third on that layer's forward product, 4x4 maps lose about as much)
_DIRECT_MIN_HW = 32

# layers whose input maps have at most this many positions run their backward pass and Adam
# in the compiled kernel (adgan._native); larger maps keep torch's products, which measured
# faster there (the 16x16 -> 32x32 layer of the 32x32 generator: 0.69 against 1.04 ms for 12
# pairs on one core; its 4x4 and 8x8 maps and the first layer gained 1.3x to 4x)
_NATIVE_MAX_HW = 64


def _adam_(params, grads, exp_avgs, exp_avg_sqs, step: torch.Tensor, lr: float, cfg) -> None:
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
    The update is torch's fused Adam, or on CPU the compiled kernel of ``adgan._native``,
    which computes the layer's input gradient, weight gradient and update in one pass over
    each pair's weights (``_native_update``; layers whose input maps have at most
    ``_NATIVE_MAX_HW`` positions). Either is exact because Adam is element-wise
    and a layer's gradient depends only on the weights above it (already consumed) and its
    own (read before they change).

    Until the first update every pair has the generator's own parameters: the first step
    (every step, when theta is not adapted) runs the forward pass and the input gradients
    as ordinary transposed convolutions and convolutions with shared weights, and each
    pair's copy of a parameter is written just before its first update. Work buffers for
    activations and gradients are made once and reused (``_ws``).
    """

    def __init__(self, gen: Generator, capacity: int, cache_bytes: int = _CACHE_BYTES):
        self._gen = weakref.ref(gen)
        self.capacity = P = capacity
        self.cache_bytes = cache_bytes
        ref = generator_parameters(gen)
        p0 = ref[0]
        dev, dt = p0.device, p0.dtype
        # storage for up to ``capacity`` pairs; ``run`` works on views of the first n
        theta = [torch.empty((P, *p.shape), dtype=dt, device=dev) for p in ref]
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
        self._lib = False  # the compiled kernel: not looked up yet
        self.native = True  # use it where it runs (SearchConfig.native, set by run)
        self._pool: ThreadPoolExecutor | None = None  # threads for the compiled kernel
        self._pool_size = 0

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
                        torch.bmm(h.unsqueeze(1), W.view(P, cin, cout * k * k), out=self.a1)
                a = self.a1.view(P, cout, k, k)  # (P, Cout, s0, s0)
            elif shared:
                a = F.conv_transpose2d(h, W, stride=2, padding=1)
            else:
                a = self._transposed_conv(i, h, W, cout, k)
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

    def _transposed_conv(self, i: int, h: torch.Tensor, W: torch.Tensor, cout: int, k: int):
        """Layer i's transposed convolution (stride 2, padding 1) with each pair's weights:
        a product per pair and ``fold``; compiled where the kernel runs (measured faster on
        every layer of the 32x32 generator: 4x4 -> 8x8 maps 2.8 against 5.7 ms for 12 pairs
        on one core), else torch's bmm and col2im."""
        P, cin, side = self.P, h.shape[1], h.shape[-1]
        N = cout * k * k
        Wm = W.view(P, cin, N)  # (P, Cin, Cout*k*k)
        hm = h.reshape(P, cin, side * side)
        a = self._ws(f"a{i}", (P, cout, 2 * side, 2 * side))
        cols_t = self._ws(f"cols_t{i}", (P, side * side, N))
        lib = self._native_lib(N, k)
        if lib is not None:

            def fwd(lo, hi, t):
                _native.forward(lib, hm[lo:hi], Wm[lo:hi], cols_t[lo:hi])
                _native.fold(lib, cols_t[lo:hi], a[lo:hi], k)

            self._parallel(P, fwd)
            return a
        cols = self._ws(f"cols{i}", (P, N, side * side))
        if side * side >= _DIRECT_MIN_HW:
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
                _adam_([self.theta[idx][a:b]], [grad], [self.m[idx][a:b]], [self.v[idx][a:b]],
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
                dy = d.mul_(torch.gt(y, 0, out=self._ws(f"mask{i}", y.shape, torch.bool)))
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
                            _native.patches(lib, dp[lo:hi], k, dT[lo:hi])

                        self._parallel(P, gather)
                    else:
                        dcols = self._ws(f"dcols{i}", (P, N, side * side))
                        _patches(pads[i], k, side, out=dcols)  # (P, Cout*k*k, HW)
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
                    _adam_([z], [self.z_grad[a:b]], [self.z_m[a:b]], [self.z_v[a:b]],
                           self.step, cfg.lr_z, cfg)  # fmt: skip
                    W0 = self.theta[0] if adapt else self.shared[0]
                    if adapt:
                        torch.bmm(z.unsqueeze(1), W0[a:b].view(b - a, cin, -1),
                                  out=self.a1[a:b])  # fmt: skip
                    else:
                        torch.mm(z, W0.view(cin, -1), out=self.a1[a:b].view(b - a, -1))
            if d_in is not None:
                d = d_in.view(P, cin, side, side)

    def _native_lib(self, N: int, k: int, HW: int = 0):
        """The compiled kernel for a layer with N = Cout*k*k, or None where torch's operations
        run it. ``HW``: the layer's input positions, for the backward pass (which runs in the
        kernel only up to ``_NATIVE_MAX_HW`` of them); 1 for the first layer, the others
        have DCGAN's 4x4 kernels (the kernel's fold and patches are written for them)."""
        if not self.native or self.z.device.type != "cpu" or HW > _NATIVE_MAX_HW:
            return None
        if HW != 1 and k != 4:
            return None
        if self._lib is False:  # not looked up yet
            self._lib = _native.load(self.z.dtype)
        lib = self._lib
        return lib if lib is not None and N % _native.vector_width(lib) == 0 else None

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
            _native.conv_backward_adam(
                lib, *[None if x is None else x[lo:hi] for x in args], work=works[t],
                shared=src, lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps, step=self.t,
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
        _adam_([self.theta[idx][a:b]], [grad], [self.m[idx][a:b]], [self.v[idx][a:b]],
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
        self.groups = _groups(xs.shape[0], cfg)
        self.native = cfg.native
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


def _search_pairs_loop(gen, xs, zs, cfg: SearchConfig, record: bool):
    """The plain reference: for each pair, a fresh copy of the generator and two Adams."""
    out_loss, out_z, zps, lps = [], [], [], []
    for p in range(xs.shape[0]):
        g = copy.deepcopy(gen).eval()
        z = zs[p : p + 1].detach().clone().requires_grad_(True)
        opt_z = torch.optim.Adam([z], lr=cfg.lr_z, betas=cfg.betas, eps=cfg.eps)
        params = list(g.parameters()) if cfg.adapt_generator else []
        opt_t = (
            torch.optim.Adam(params, lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps)
            if params
            else None
        )
        if not params:
            g.requires_grad_(False)
        zp, lp = [], []
        for _ in range(cfg.steps):
            loss = ((g(z) - xs[p : p + 1]) ** 2).sum()
            zp.append(z.detach().cpu().numpy()[0].copy())
            lp.append(float(loss.detach()))
            opt_z.zero_grad()
            if opt_t is not None:
                opt_t.zero_grad()
            loss.backward()
            opt_z.step()
            if opt_t is not None:
                opt_t.step()
        with torch.no_grad():
            final = float(((g(z) - xs[p : p + 1]) ** 2).sum())
        zp.append(z.detach().cpu().numpy()[0].copy())
        lp.append(final)
        out_loss.append(final)
        out_z.append(zp[-1])
        zps.append(np.stack(zp))
        lps.append(np.array(lp))
    res = (np.array(out_loss), np.stack(out_z))
    if record:
        return res + (np.stack(zps, axis=1), np.stack(lps, axis=1))
    return res


def _search_seeds_loop(gen, xs, zs, cfg: SearchConfig, record: bool):
    """The plain reference for "seeds" statistics: for each image, a fresh copy of the
    generator and two Adams per seed; each BatchNorm layer normalises the seeds' outputs
    together (``F.batch_norm`` in training mode on the batch of the image's seeds), then
    applies each seed's own scale and shift; one backward pass of the image's summed loss."""
    S = cfg.n_seeds
    out_loss, out_z, zps, lps = [], [], [], []
    for start in range(0, xs.shape[0], S):
        x = xs[start : start + 1]
        gens = [copy.deepcopy(gen).eval() for _ in range(S)]
        zl = [zs[start + j : start + j + 1].detach().clone().requires_grad_(True) for j in range(S)]
        opts = [torch.optim.Adam([z], lr=cfg.lr_z, betas=cfg.betas, eps=cfg.eps) for z in zl]
        for g in gens:
            if cfg.adapt_generator:
                opts.append(
                    torch.optim.Adam(g.parameters(), lr=cfg.lr_theta, betas=cfg.betas, eps=cfg.eps)
                )
            else:
                g.requires_grad_(False)

        def generate(gens=gens, zl=zl):
            hs = [z.reshape(1, -1, 1, 1) for z in zl]
            for i in range(len(gen.convs)):
                hs = [g.convs[i](h) for g, h in zip(gens, hs, strict=True)]
                if i == len(gen.convs) - 1:
                    return [torch.tanh(h) for h in hs]
                norm = gen.norms[i]
                normed = F.batch_norm(torch.cat(hs), None, None, training=True, eps=norm.eps)
                hs = [
                    torch.relu(
                        normed[j : j + 1] * g.norms[i].weight[None, :, None, None]
                        + g.norms[i].bias[None, :, None, None]
                    )
                    for j, g in enumerate(gens)
                ]

        zp, lp = [], []
        for _ in range(cfg.steps):
            losses = [((h - x) ** 2).sum() for h in generate()]
            zp.append(torch.cat(zl).detach().cpu().numpy().copy())
            lp.append(np.array([float(v.detach()) for v in losses]))
            for o in opts:
                o.zero_grad()
            torch.stack(losses).sum().backward()
            for o in opts:
                o.step()
        with torch.no_grad():
            final = np.array([float(((h - x) ** 2).sum()) for h in generate()])
        zp.append(torch.cat(zl).detach().cpu().numpy().copy())
        lp.append(final)
        out_loss.append(final)
        out_z.append(zp[-1])
        zps.append(np.stack(zp))
        lps.append(np.stack(lp))
    res = (np.concatenate(out_loss), np.concatenate(out_z))
    if record:
        return res + (np.concatenate(zps, axis=1), np.concatenate(lps, axis=1))
    return res
