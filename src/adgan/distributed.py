"""Several processes, GPUs or machines on one job, with torch.distributed under ``torchrun``.

``torchrun`` starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; ``join_world`` (called by the command line) joins its process group: gloo on the
CPU, NCCL on GPUs. Without those variables (a plain ``adgan`` or a library call) the world is
one process and nothing here communicates.

* ``rank`` and ``score`` give each process a deterministic share of the images
  (``shard``); ``train`` averages the gradients of its shard of every batch
  (``average_gradients``) and synchronises BatchNorm's batch statistics over the processes
  (``synced_batchnorm``), so that it trains as one process with the whole batch would;
* ``on_first`` runs a step on rank 0 alone (settings checks, merges) and raises its error on
  every rank, so that no process waits for one that has stopped;
* ``wait_all`` waits for every process without a time limit: a process that dies ends the
  others' wait (its connection closes, and torchrun stops the rest).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from adgan.errors import AdganError, ConfigError

T = TypeVar("T")

#: seconds a process waits for the others to join before it gives up (env variable)
TIMEOUT_ENV = "ADGAN_RENDEZVOUS_TIMEOUT"
DEFAULT_TIMEOUT = 120.0
#: collectives after the world has formed wait as long as the slowest process works
_WORK_TIMEOUT = timedelta(days=7)
_work_group = None


class WorldError(AdganError):
    """The processes of a distributed run did not form a world, or one of them failed."""

    #: raised on every rank alike: the command line reports it once, on rank 0
    shared = True


def _dist():
    import torch.distributed as dist

    return dist


_alone = 0


def active() -> bool:
    """Whether this process is one of several in an initialised process group (and not
    within ``alone()``)."""
    dist = _dist()
    return (
        not _alone and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    )


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within the block this process works as a world of one (e.g. the benchmark's rows,
    each trained and scored by one process): nothing is shared or awaited."""
    global _alone
    _alone += 1
    try:
        yield
    finally:
        _alone -= 1


def rank_and_size() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) outside a distributed run."""
    if not active():
        return 0, 1
    dist = _dist()
    return dist.get_rank(), dist.get_world_size()


def launched_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when the process was not started by torchrun)."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE: expected a number of processes, got {text!r}") from exc


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e7:
        raise ConfigError(f"{TIMEOUT_ENV}: expected a number of seconds, got {text!r}")
    return value


def join_world(device: str) -> str:
    """Join the process group torchrun's environment describes (if WORLD_SIZE > 1) and return
    the device this process computes on: with ``cuda`` (or ``auto`` on a machine with GPUs)
    the GPU of its local rank. A world that does not form within ADGAN_RENDEZVOUS_TIMEOUT
    seconds (default 120) is a WorldError naming the rendezvous address."""
    global _work_group
    size = launched_size()
    if size <= 1 or active():
        return device
    dist = _dist()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    addr = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device!r} asked for, but CUDA is not available here")
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local}: this machine has {torch.cuda.device_count()} GPU(s); "
                "start at most that many processes per node (torchrun --nproc-per-node)"
            )
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    seconds = _timeout()
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=seconds))
        _work_group = dist.new_group(timeout=_WORK_TIMEOUT)
        dist.barrier(group=_work_group)
    except Exception as exc:  # a timeout, a refused connection, an unknown host
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise WorldError(
            f"rendezvous {addr}: the {size} processes did not form a world within "
            f"{seconds:g} s ({first}); check --master-addr/--master-port, that every node "
            f"was started, and {TIMEOUT_ENV}"
        ) from exc
    return device


def leave_world() -> None:
    global _work_group
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _work_group = None


def is_first() -> bool:
    return rank_and_size()[0] == 0


def shard(items: Sequence[T]) -> list[T]:
    """This process's share of ``items``: every size-th item from its rank on, so the
    shares are disjoint, cover ``items`` and depend only on their order."""
    r, n = rank_and_size()
    return list(items[r::n])


def wait_all() -> None:
    """Wait for every process (no time limit while they work)."""
    if active():
        _dist().barrier(group=_work_group)


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=0, group=_work_group)
    return box[0]


def on_first(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 alone, its result on every rank; its AdganError is raised on every
    rank (marked as shared, so that it is reported once)."""
    if not active():
        return fn()
    result, error = None, None
    if is_first():
        try:
            result = fn()
        except AdganError as exc:
            error = (type(exc), str(exc))
        except BaseException as exc:
            # every rank must hear of it, or they wait for rank 0 forever
            broadcast((None, (WorldError, f"rank 0 failed: {type(exc).__name__}: {exc}")))
            raise
    result, error = broadcast((result, error))
    if error is not None:
        exc = error[0](error[1])
        exc.shared = True
        raise exc
    return result


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * rank_and_size()[1]
    _dist().all_gather_object(out, obj, group=_work_group)
    return out


def average_gradients(params: Iterator[torch.nn.Parameter] | list) -> None:
    """Replace each gradient by its mean over the processes (what DistributedDataParallel
    does), in one flat all-reduce."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    _dist().all_reduce(flat)
    flat /= rank_and_size()[1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the processes; the gradient flows back to every process's
    part (the sum of the gradients: each process's loss depends on every part)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        _dist().all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        _dist().all_reduce(grad)
        return grad


def _synced_bn(bn: torch.nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm2d in training mode with the batch statistics of every process's shard (as
    SyncBatchNorm computes them, on any device): the gradients flow through the sums."""
    all_reduce = _SumOverRanks.apply
    n_local = x.shape[0] * x.shape[2] * x.shape[3]
    count = n_local * rank_and_size()[1]
    mean = all_reduce(x.sum(dim=(0, 2, 3))) / count
    centred = x - mean[None, :, None, None]
    var = all_reduce((centred * centred).sum(dim=(0, 2, 3))) / count
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked += 1
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.lerp_(mean.detach(), m)
            bn.running_var.lerp_(var.detach() * count / max(count - 1, 1), m)
    y = centred * torch.rsqrt(var + bn.eps)[None, :, None, None]
    if bn.affine:
        y = y * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    return y


@contextlib.contextmanager
def synced_batchnorm(*modules: torch.nn.Module) -> Iterator[None]:
    """Within the block, every BatchNorm2d of ``modules`` in training mode normalises with
    the statistics of all processes' shards (nothing changes in a one-process world)."""
    if not active():
        yield
        return
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def forward(bn):
        def run(x):
            if not bn.training:
                return F.batch_norm(
                    x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
                )
            return _synced_bn(bn, x)

        return run

    for bn in bns:
        bn.forward = forward(bn)
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over the processes (a copy)."""
    t = t.clone()
    if active():
        _dist().all_reduce(t)
        t /= rank_and_size()[1]
    return t
