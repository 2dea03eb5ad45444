"""``latent_search``: the (image, seed) pairs of a call in chunks, on worker threads.

Memory is bounded by ``max_pairs`` (or the ``memory_mb`` budget): the pairs are processed
in chunks of at most that many, so the peak does not grow with the number of images. On
CPU the fused kernel's chunks are shared out to worker threads, one per torch thread while
the budget gives each at least ``MIN_PAIRS_PER_WORKER`` pairs; each worker runs its
operations on its share of the threads, rather than every operation being split across all
of them (1.35 to 1.6 times as fast on 2 cores; docs/performance.md).
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable

import numpy as np
import torch

from adgan.errors import ConfigError
from adgan.nets.dcgan import Generator
from adgan.search import fused, mixed
from adgan.search.batched import generator_parameters, search_pairs_bmm
from adgan.search.config import SearchConfig, SearchResult, log_prior
from adgan.search.reference import search_loop
from adgan.torch_utils import flush_denormals

#: the fused kernels' buffers, kept with their generator between calls (scoring a stream
#: chunk by chunk, as ``rank`` does, then allocates them once): generator -> {(dtype,
#: device, worker): FusedKernel}
FUSED_KERNELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def latent_search(
    gen: Generator,
    x: torch.Tensor,
    z0: torch.Tensor,
    cfg: SearchConfig | None = None,
    record: bool = False,
    progress: Callable[[int], None] | None = None,
    keep_z: bool = True,
) -> SearchResult:
    """Run the search for images x (n, C, H, W) from the seeds z0 (n_seeds, latent).

    The same z0 serves every image, so an image's score depends on that image alone (and
    not on the others in its batch). ``progress(k)`` is called with the number of images
    finished after each chunk. ``keep_z=False`` drops the final latents (n x n_seeds x
    latent values, the one part of the result that grows large) and keeps only their
    log-density under the prior. ``cfg`` None: the paper's settings.
    """
    cfg = (cfg or SearchConfig()).validate()
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
    seed_log_prior = np.empty(total)
    z_path = np.empty((cfg.steps + 1, total, z0.shape[1])) if record else None
    loss_path = np.empty((cfg.steps + 1, total)) if record else None
    budget = auto_max_pairs(gen, cfg, kernel) if kernel != "loop" else S
    threads = torch.get_num_threads()
    # an image's seeds share their statistics under "seeds": chunks of whole images
    unit = S if cfg.bn_stats == "seeds" else 1
    chunk, workers = plan_chunks(
        total, unit, budget, worker_count(cfg, kernel, dev, budget, threads)
    )
    intra = max(1, threads // workers)  # torch threads of each worker
    # buffers are kept with the generator between calls: scoring a stream chunk by chunk
    # (rank) then allocates them once, instead of once per chunk
    kernels = FUSED_KERNELS.setdefault(gen, {}) if kernel == "fused" else {}
    if kernel == "fused":  # free the buffers of workers this call does not use
        for key in [k for k in kernels if k[:2] == (dtype, dev) and k[2] >= workers]:
            del kernels[key]

    cache = fused.CACHE_BYTES // workers  # the workers share the last-level cache
    kernel_class = mixed.kernel_class(gen, cfg) if kernel == "fused" else None

    def run(xs, zs, worker):
        if kernel == "fused":
            # one kernel per dtype, device and worker, as large as the largest chunk so far:
            # the last, shorter chunk of a call runs on a view of the same buffers
            key = (xs.dtype, xs.device, worker)
            old = kernels.get(key)
            if (old is None or old.capacity < chunk or old.cache_bytes != cache
                    or type(old) is not kernel_class):  # fmt: skip
                kernels.pop(key, None)  # free the old buffers before making larger ones
                kernels[key] = kernel_class(gen, chunk, cache_bytes=cache)
            return kernels[key].run(xs, zs, cfg, record)
        if kernel == "bmm":
            return search_pairs_bmm(gen, xs, zs, cfg, record)
        return search_loop(gen, xs, zs, cfg, record)

    left = np.full(n, S)  # pairs of each image not yet searched
    with flush_denormals():
        for start, stop, out in run_chunks(run, x, z0, S, total, chunk, workers, intra):
            losses[start:stop] = out[0]
            seed_log_prior[start:stop] = log_prior(out[1])
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
        seed_log_prior=seed_log_prior.reshape(n, S),
    )
    if record:
        res.z_path = z_path.reshape(cfg.steps + 1, n, S, -1)
        res.loss_path = loss_path.reshape(cfg.steps + 1, n, S)
    return res


def auto_max_pairs(gen: Generator, cfg: SearchConfig, kernel: str = "bmm") -> int:
    """Pairs in flight at once: ``cfg.max_pairs``, else as many as ``cfg.memory_mb`` of
    per-pair state allows."""
    if cfg.max_pairs is not None:
        return max(1, int(cfg.max_pairs))
    n_params = sum(p.numel() for p in generator_parameters(gen))
    # with autograd: parameters, gradients, two Adam moments and saved tensors, about 6
    # copies; the fused kernel keeps parameters and moments only (gradients stay small)
    copies = 3 if kernel == "fused" else 6
    per_pair = copies * n_params * 4 + 64 * gen.config.channels * gen.config.image_size**2
    return max(1, int(cfg.memory_mb * 2**20 // per_pair))


def plan_chunks(total: int, unit: int, budget: int, workers: int) -> tuple[int, int]:
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
MIN_PAIRS_PER_WORKER = 8


def worker_count(cfg: SearchConfig, kernel: str, dev: torch.device, budget: int, threads: int):
    """Threads running chunks: the fused kernel on CPU runs one chunk per worker thread, as
    many workers as torch has threads, but no more than the memory budget can give at least
    ``MIN_PAIRS_PER_WORKER`` pairs each (the others' threads then go to each worker's
    operations)."""
    if kernel != "fused" or dev.type != "cpu":
        return 1
    if cfg.workers:
        return cfg.workers
    return max(1, min(threads, budget // MIN_PAIRS_PER_WORKER))


def run_chunks(run, x, z0, S, total, chunk, workers, intra):
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
    yield from threaded(job, starts, workers, intra)


def threaded(job, starts, workers: int, intra: int):
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
