"""WGAN training (Arjovsky et al. 2017, Eq. 2 of the ADGAN paper) and WGAN-GP (Gulrajani et
al. 2017), with atomic checkpoints, resume, a loss log, sample grids and divergence checks.

Training length is counted in generator iterations; each generator iteration follows
``n_critic`` critic steps, as both papers count it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from adgan import distributed
from adgan.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from adgan.files import (
    atomic_torch_save,
    check_header,
    complete_rows,
    differences,
    fingerprint,
    header,
    load_state,
    safe_torch_load,
)
from adgan.nets.dcgan import Critic, DCGANConfig, Generator
from adgan.torch_utils import flush_denormals, seeded

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "adgan-gan"

#: decays of the exponential moving averages of the generator's weights kept beside it
#: (for ``adgan-plus``); tracking them reads no random numbers, so training is unchanged
EMA_DECAYS = (0.99, 0.999)

__all__ = ["TrainConfig", "TrainedGAN", "TrainingDiverged", "load_gan", "train_gan", "train_wgan"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Defaults are WGAN's authors' (RMSprop 5e-5, clipping 0.01,
    5 critic steps per generator step, 100 critic steps for the first 25 generator
    iterations and every 500th); ``objective="wgan-gp"`` uses Adam 1e-4, betas (0.5, 0.9)
    and a gradient penalty of weight 10 instead of clipping."""

    objective: str = "wgan"
    iterations: int = 1000
    batch_size: int = 64
    n_critic: int = 5
    lr: float | None = None  # None: 5e-5 for wgan, 1e-4 for wgan-gp
    clip: float = 0.01
    gp_lambda: float = 10.0
    betas: tuple[float, float] = (0.5, 0.9)
    critic_boost: bool = True  # WGAN's 100 critic steps early on and every 500 iterations
    checkpoint_every: int = 100
    diverge_threshold: float = 1e6

    def validate(self) -> TrainConfig:
        if self.objective not in ("wgan", "wgan-gp"):
            raise ConfigError(f"objective: expected wgan or wgan-gp, got {self.objective!r}")
        if self.iterations < 0 or self.batch_size < 1 or self.n_critic < 1:
            raise ConfigError("iterations >= 0, batch_size >= 1 and n_critic >= 1 are required")
        return self

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 5e-5 if self.objective == "wgan" else 1e-4


def make_optimizers(gen: Generator, critic: Critic, cfg: TrainConfig):
    lr = cfg.learning_rate
    if cfg.objective == "wgan":
        return (
            torch.optim.RMSprop(gen.parameters(), lr=lr),
            torch.optim.RMSprop(critic.parameters(), lr=lr),
        )
    return (
        torch.optim.Adam(gen.parameters(), lr=lr, betas=cfg.betas),
        torch.optim.Adam(critic.parameters(), lr=lr, betas=cfg.betas),
    )


def gradient_penalty(
    critic: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    gen: torch.Generator,
    share: tuple[int, slice] | None = None,
):
    """(||grad_x d(x_hat)|| - 1)^2 at random interpolates x_hat (WGAN-GP). ``share`` (batch,
    rows): real and fake are these rows of a batch, whose random numbers are all drawn."""
    n = real.shape[0] if share is None else share[0]
    alpha = torch.rand(n, 1, 1, 1, generator=gen, device=real.device, dtype=real.dtype)
    if share is not None:
        alpha = alpha[share[1]]
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


@dataclass
class TrainedGAN:
    """What training gives: the networks, the moving averages of the generator's weights
    (decay -> generator, BatchNorm statistics re-estimated like the generator's) and the
    loss log."""

    generator: Generator
    critic: Critic
    generator_ema: dict[float, Generator]
    history: list[dict]


def train_wgan(
    X: torch.Tensor,
    arch: DCGANConfig,
    cfg: TrainConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    progress: Callable[[int, dict], None] | None = None,
) -> tuple[Generator, Critic, list[dict]]:
    """Train a generator / critic pair on images X (n, C, H, W) in [-1, 1].

    With ``out_dir``, writes ``checkpoint.pt`` atomically every ``checkpoint_every``
    iterations and at the end, ``losses.csv`` as it goes and ``samples.png``; a rerun with
    the same ``out_dir`` resumes from the checkpoint. ``progress(iteration, record)`` is
    called after every generator iteration.
    """
    res = train_gan(X, arch, cfg, seed, device, out_dir, progress)
    return res.generator, res.critic, res.history


def train_gan(
    X: torch.Tensor,
    arch: DCGANConfig,
    cfg: TrainConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    progress: Callable[[int, dict], None] | None = None,
) -> TrainedGAN:
    """``train_wgan``, also returning the generator's moving averages.

    In a distributed run (``adgan.distributed``; torchrun) every process holds the whole of
    X and draws the same batches; each computes the losses of its share of every batch, the
    gradients are averaged over the processes and BatchNorm uses the whole batch's
    statistics, so that the processes train as one process with the whole batch would (to
    float rounding). Rank 0 alone writes to ``out_dir``; every rank resumes from it."""
    with flush_denormals():
        return _train(X, arch, cfg, seed, device, out_dir, progress)


class _EMA:
    """Moving averages of a generator's parameters, with TensorFlow's warm-up: the decay at
    update t is min(decay, (1 + t) / (10 + t)), so the initial weights fade out quickly."""

    def __init__(self, gen: Generator, decays=EMA_DECAYS):
        self.avg = {d: [p.detach().clone() for p in gen.parameters()] for d in decays}
        self.updates = 0

    @torch.no_grad()
    def update(self, gen: Generator) -> None:
        self.updates += 1
        params = [p.detach() for p in gen.parameters()]
        for d, avg in self.avg.items():
            w = 1.0 - min(d, (1 + self.updates) / (10 + self.updates))
            torch._foreach_lerp_(avg, params, w)

    def state_dict(self) -> dict:
        return {"updates": self.updates, **{repr(d): list(a) for d, a in self.avg.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for d in self.avg:
            got = state[repr(d)]
            if len(got) != len(self.avg[d]):
                raise CheckpointError("moving average of other parameters")
            self.avg[d] = [
                t.to(a.device, a.dtype).clone() for t, a in zip(got, self.avg[d], strict=True)
            ]

    def generators(self, gen: Generator, seed: int) -> dict[float, Generator]:
        out = {}
        for d, avg in self.avg.items():
            g = Generator(gen.config).to(next(gen.parameters()).device)
            with torch.no_grad():
                for p, a in zip(g.parameters(), avg, strict=True):
                    p.copy_(a)
            recalibrate_batchnorm(g, seed)
            out[d] = g.eval()
        return out


def _train(X, arch, cfg, seed, device, out_dir, progress):
    cfg = cfg.validate()
    device = torch.device(device)
    arch = arch.validate()
    if tuple(X.shape[1:]) != (arch.channels, arch.image_size, arch.image_size):
        raise ConfigError(
            f"images of shape {tuple(X.shape[1:])} do not fit the architecture "
            f"({arch.channels}, {arch.image_size}, {arch.image_size})"
        )
    if len(X) < 2:
        raise DataError(f"training needs at least 2 images, got {len(X)}")
    with seeded(seed):  # the initialisation, not the caller's RNG
        gen, critic = Generator(arch).to(device), Critic(arch).to(device)
    opt_g, opt_d = make_optimizers(gen, critic, cfg)
    ema = _EMA(gen)
    rng = torch.Generator(device=device)
    rng.manual_seed(seed)
    X = X.to(device)
    history: list[dict] = []
    start = 0
    out = Path(out_dir) if out_dir is not None else None
    rank, size = distributed.rank_and_size()
    writes = out is not None and rank == 0  # one process writes the files
    # identifies the training images, so that a checkpoint is never resumed on other data
    data = fingerprint(str(tuple(X.shape)), X) if out is not None else ""

    def checkpoint(iteration: int) -> None:
        save_checkpoint(
            out / CHECKPOINT,
            arch,
            cfg,
            seed,
            gen,
            critic,
            opt_g,
            opt_d,
            rng,
            iteration,
            data,
            ema,
        )

    if out is not None:
        distributed.on_first(lambda: out.mkdir(parents=True, exist_ok=True))
        ck = out / CHECKPOINT
        if ck.exists():
            start, history = _resume(ck, arch, cfg, seed, gen, critic, opt_g, opt_d, rng, data, ema)
            log.info("resuming %s at generator iteration %d", ck, start)
        distributed.wait_all()  # every rank has read the files before rank 0 writes
        if writes:
            _rewrite_log(out / "losses.csv", history)
    batch = min(cfg.batch_size, len(X))
    rows = _my_rows(batch, rank, size)
    t0 = time.perf_counter()
    with distributed.synced_batchnorm(gen, critic):
        for it in range(start, cfg.iterations):
            rec = _iteration(it, X, gen, critic, opt_g, opt_d, rng, cfg, arch, batch, rows)
            rec["seconds"] = time.perf_counter() - t0
            ema.update(gen)
            _check_divergence(rec, cfg, out)
            history.append(rec)
            if writes:
                _append_log(out / "losses.csv", rec)
                if (it + 1) % cfg.checkpoint_every == 0 and it + 1 < cfg.iterations:
                    checkpoint(it + 1)
            if progress is not None:
                progress(it + 1, rec)
    for p in critic.parameters():
        p.requires_grad_(True)
    recalibrate_batchnorm(gen, seed)
    gen.eval()
    critic.eval()
    if writes:
        checkpoint(cfg.iterations)
        save_sample_grid(gen, out / "samples.png", seed=seed)
    distributed.wait_all()  # no rank reads a checkpoint that rank 0 has not finished
    return TrainedGAN(gen, critic, ema.generators(gen, seed), history)


def _my_rows(batch: int, rank: int, size: int) -> slice | None:
    """This process's rows of every batch (None: all of them, one process)."""
    if size == 1:
        return None
    if batch % size:
        raise ConfigError(
            f"batch_size: {batch} images per batch do not split evenly over {size} processes; "
            f"use a multiple of {size}"
        )
    part = batch // size
    return slice(rank * part, (rank + 1) * part)


def _iteration(it, X, gen, critic, opt_g, opt_d, rng, cfg, arch, batch, rows) -> dict:
    """One generator iteration after its critic steps; the losses of the whole batch."""
    device = X.device
    share = None if rows is None else (batch, rows)
    gen.train()
    critic.train()
    boost = cfg.objective == "wgan" and cfg.critic_boost and (it < 25 or it % 500 == 0)
    d_steps = 100 if boost else cfg.n_critic
    for p in critic.parameters():
        p.requires_grad_(True)
    for _ in range(d_steps):
        real = X[torch.randint(len(X), (batch,), generator=rng, device=device)]
        z = torch.randn(batch, arch.latent_dim, generator=rng, device=device)
        if rows is not None:  # every rank draws the whole batch, and keeps its rows
            real, z = real[rows], z[rows]
        with torch.no_grad():
            fake = gen(z)
        w_est = critic(real).mean() - critic(fake).mean()
        loss_d = -w_est
        gp = torch.zeros((), device=device)
        if cfg.objective == "wgan-gp":
            gp = gradient_penalty(critic, real, fake, rng, share)
            loss_d = loss_d + cfg.gp_lambda * gp
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        distributed.average_gradients(critic.parameters())
        opt_d.step()
        if cfg.objective == "wgan":
            with torch.no_grad():
                for p in critic.parameters():
                    p.clamp_(-cfg.clip, cfg.clip)
    for p in critic.parameters():
        p.requires_grad_(False)
    z = torch.randn(batch, arch.latent_dim, generator=rng, device=device)
    if rows is not None:
        z = z[rows]
    loss_g = -critic(gen(z)).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    distributed.average_gradients(gen.parameters())
    opt_g.step()
    losses = [loss_d.detach(), w_est.detach(), loss_g.detach(), gp.detach()]
    if rows is not None:  # the whole batch's losses, on every rank alike
        losses = list(distributed.mean_over_ranks(torch.stack(losses)))
    return {
        "iteration": it + 1,
        "critic_loss": float(losses[0]),
        "wasserstein_estimate": float(losses[1]),
        "generator_loss": float(losses[2]),
        "gradient_penalty": float(losses[3]),
    }


@torch.no_grad()
def recalibrate_batchnorm(
    gen: Generator, seed: int, batches: int = 20, batch_size: int = 256
) -> None:
    """Replace the generator's running BatchNorm statistics by exact averages over fresh
    prior samples, so that eval mode (used by the search) sees the statistics of the final
    weights rather than an exponential average over training."""
    dev = next(gen.parameters()).device
    rng = torch.Generator(device=dev)
    rng.manual_seed(seed + 1)
    moms = {}
    for bn in gen.norms:
        bn.reset_running_stats()
        moms[bn] = bn.momentum
        bn.momentum = None  # cumulative average
    gen.train()
    for _ in range(batches):
        gen(torch.randn(batch_size, gen.config.latent_dim, generator=rng, device=dev))
    for bn, m in moms.items():
        bn.momentum = m
    gen.eval()


def _check_divergence(rec: dict, cfg: TrainConfig, out: Path | None) -> None:
    vals = [rec["critic_loss"], rec["generator_loss"]]
    if any(not math.isfinite(v) or abs(v) > cfg.diverge_threshold for v in vals):
        where = f"; the last good checkpoint is in {out}" if out is not None else ""
        raise TrainingDiverged(
            f"training diverged at generator iteration {rec['iteration']}: critic loss "
            f"{rec['critic_loss']:.4g}, generator loss {rec['generator_loss']:.4g}{where}; "
            "try a lower learning rate or objective wgan-gp"
        )


def save_checkpoint(
    path,
    arch,
    cfg,
    seed,
    gen,
    critic,
    opt_g,
    opt_d,
    rng,
    iteration,
    data: str = "",
    ema: _EMA | None = None,
) -> None:
    atomic_torch_save(
        {
            **header(CHECKPOINT_FORMAT),
            "arch": json.dumps(arch.to_dict()),
            "train": json.dumps(asdict(cfg)),
            "seed": seed,
            "iteration": iteration,
            "generator": gen.state_dict(),
            "critic": critic.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "rng": rng.get_state(),
            "rng_device": str(rng.device),
            "data": data,
            **({"generator_ema": ema.state_dict()} if ema is not None else {}),
        },
        path,
    )


def load_gan(path: str | Path, device="cpu") -> tuple[Generator, Critic, dict]:
    """Load a generator and critic from a training checkpoint (tensors only, no code)."""
    blob = safe_torch_load(path, "GAN checkpoint")
    check_header(blob, CHECKPOINT_FORMAT, path, "GAN checkpoint")
    arch = DCGANConfig(**json.loads(blob["arch"]))
    gen, critic = Generator(arch), Critic(arch)
    load_state(gen, blob["generator"], path, "generator")
    load_state(critic, blob["critic"], path, "critic")
    return gen.to(device).eval(), critic.to(device).eval(), blob


def ema_generators(blob: dict, seed: int, device="cpu") -> dict[float, Generator]:
    """The generator's moving averages kept in a training checkpoint (``load_gan``'s blob),
    with their BatchNorm statistics re-estimated as training does at its end."""
    if "generator_ema" not in blob:
        raise CheckpointError("the checkpoint keeps no moving averages of the generator")
    arch = DCGANConfig(**json.loads(blob["arch"]))
    gen = Generator(arch).to(device)
    ema = _EMA(gen)
    ema.load_state_dict(blob["generator_ema"])
    return ema.generators(gen, seed)


def _resume(ck, arch, cfg, seed, gen, critic, opt_g, opt_d, rng, data, ema):
    blob = safe_torch_load(ck, "GAN checkpoint")
    check_header(blob, CHECKPOINT_FORMAT, ck, "GAN checkpoint", "; use another output folder")
    if blob.get("data") != data:
        raise CheckpointError(
            f"{ck}: trained on other images (or another calibration split); "
            "use another output folder"
        )
    if blob.get("rng_device") != str(rng.device):
        raise CheckpointError(
            f"{ck}: written on {blob.get('rng_device')}, resumed on {rng.device}; "
            "resume on the same kind of device"
        )
    if json.loads(blob["arch"]) != arch.to_dict():
        raise CheckpointError(
            f"{ck}: made for architecture {blob['arch']}, not {json.dumps(arch.to_dict())}; "
            "use another output folder or the same settings"
        )
    changed = differences(json.loads(blob["train"]), asdict(cfg), ignore=["iterations"])
    if changed or blob["seed"] != seed:
        raise CheckpointError(
            f"{ck}: made with other training settings or seed; use another folder"
        )
    load_state(gen, blob["generator"], ck, "generator")
    load_state(critic, blob["critic"], ck, "critic")
    opt_g.load_state_dict(blob["opt_g"])
    opt_d.load_state_dict(blob["opt_d"])
    rng.set_state(blob["rng"])
    if "generator_ema" in blob:
        try:
            ema.load_state_dict(blob["generator_ema"])
        except (KeyError, TypeError, ValueError, CheckpointError) as exc:
            raise CheckpointError(f"{ck}: damaged moving averages ({exc!r:.120})") from exc
    else:  # written before the averages were kept: they start from the resumed weights
        ema.__init__(gen)
    it = int(blob["iteration"])
    if it > cfg.iterations:
        raise CheckpointError(
            f"{ck}: already trained for {it} generator iterations, more than the "
            f"{cfg.iterations} asked for; ask for at least as many or use another folder"
        )
    history = [r for r in _read_log(ck.parent / "losses.csv") if r["iteration"] <= it]
    return it, history


def _read_log(path: Path) -> list[dict]:
    out = []
    for r in complete_rows(path):
        try:
            out.append({k: (int(v) if k == "iteration" else float(v)) for k, v in r.items()})
        except (TypeError, ValueError):
            break  # a row cut short by an interruption
    return out


LOG_FIELDS = [
    "iteration",
    "critic_loss",
    "wasserstein_estimate",
    "generator_loss",
    "gradient_penalty",
    "seconds",
]


def _rewrite_log(path: Path, history: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, LOG_FIELDS)
        w.writeheader()
        w.writerows(history)


def _append_log(path: Path, rec: dict) -> None:
    with path.open("a", newline="") as fh:
        csv.DictWriter(fh, LOG_FIELDS).writerow(rec)


@torch.no_grad()
def save_sample_grid(gen: Generator, path: str | Path, n: int = 64, seed: int = 0) -> None:
    from adgan.plots import save_image_grid

    dev = next(gen.parameters()).device
    rng = torch.Generator(device=dev)
    rng.manual_seed(seed)
    gen.eval()
    imgs = gen(torch.randn(n, gen.config.latent_dim, generator=rng, device=dev)).cpu().numpy()
    save_image_grid(imgs, path)
