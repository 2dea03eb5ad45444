"""The batched latent search against a plain per-seed loop, and its invariances."""

import numpy as np
import pytest
import torch

from adgan.errors import ConfigError
from adgan.nets.dcgan import DCGANConfig, Generator
from adgan.search import SearchConfig, latent_search, pair_loss


def _generator(dtype=torch.float64, size=16, channels=1, latent=6, width=4, seed=0):
    torch.manual_seed(seed)
    g = Generator(DCGANConfig(image_size=size, channels=channels, latent_dim=latent, width=width))
    g = g.to(dtype)
    g.train()
    with torch.no_grad():  # non-trivial running statistics, as after training
        g(torch.randn(32, latent, dtype=dtype))
    return g.eval()


@pytest.mark.parametrize("kernel", ["fused", "bmm"])
@pytest.mark.parametrize("adapt", [True, False])
@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3), (28, 1)])
def test_batched_search_equals_plain_loop_with_torch_adam(kernel, adapt, size, channels):
    g = _generator(size=size, channels=channels)
    x = torch.rand(3, channels, size, size, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(3, 6, dtype=torch.float64)
    # max_pairs=5 splits the 9 pairs into chunks of 5 and 4: the first ends inside image 1
    cfg = dict(n_seeds=3, steps=4, adapt_generator=adapt)
    fast = latent_search(g, x, z0, SearchConfig(**cfg, max_pairs=5, kernel=kernel, workers=1))
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"))
    np.testing.assert_allclose(fast.seed_losses, slow.seed_losses, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(fast.z, slow.z, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("kernel", ["fused", "bmm"])
@pytest.mark.parametrize("adapt", [True, False])
@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3)])
def test_seed_statistics_search_equals_plain_loop(kernel, adapt, size, channels):
    g = _generator(size=size, channels=channels)
    x = torch.rand(3, channels, size, size, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(4, 6, dtype=torch.float64)
    cfg = dict(n_seeds=4, steps=4, adapt_generator=adapt, bn_stats="seeds")
    # max_pairs=9 is rounded down to whole images: chunks of 2 images, then 1
    fast = latent_search(g, x, z0, SearchConfig(**cfg, max_pairs=9, kernel=kernel), record=True)
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"), record=True)
    np.testing.assert_allclose(fast.seed_losses, slow.seed_losses, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(fast.z, slow.z, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(fast.loss_path, slow.loss_path, rtol=1e-7, atol=1e-10)
    # the statistics differ from the running ones: so do the losses
    running = latent_search(g, x, z0, SearchConfig(**{**cfg, "bn_stats": "running"}))
    assert not np.allclose(running.seed_losses, fast.seed_losses, rtol=1e-3)


def test_seed_statistics_couple_the_seeds_of_an_image_only():
    g = _generator(size=8, channels=1)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(3, 6, dtype=torch.float64)
    cfg = SearchConfig(n_seeds=3, steps=2, bn_stats="seeds", max_pairs=6)
    both = latent_search(g, x, z0, cfg).seed_losses
    # an image's score does not depend on the other images of its chunk
    np.testing.assert_allclose(latent_search(g, x[1:], z0, cfg).seed_losses[0], both[1])
    # but a seed's loss depends on the other seeds of its image
    z1 = z0.clone()
    z1[2] += 1.0
    other = latent_search(g, x[:1], z1, cfg).seed_losses[0]
    assert not np.isclose(other[0], both[0, 0], rtol=1e-6)


def test_bn_stats_is_checked():
    with pytest.raises(ConfigError, match="bn_stats"):
        SearchConfig(bn_stats="batch").validate()


@pytest.mark.parametrize("cache_bytes", [1, 20000])
def test_fused_updates_a_few_pairs_at_a_time_equal_the_plain_loop(monkeypatch, cache_bytes):
    # a tiny cache budget makes every layer's Adam run one pair (or a few) at a time, with
    # the last group of a chunk shorter than the others
    from adgan.search import chunks, fused

    monkeypatch.setattr(fused, "CACHE_BYTES", cache_bytes)
    g = _generator(size=16, channels=3)
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(4, 6, dtype=torch.float64)
    cfg = dict(n_seeds=4, steps=3)
    # two chunks of 8 pairs; with 20000 bytes the last layer's Adam takes 6 pairs, then 2
    fast = latent_search(g, x, z0, SearchConfig(**cfg, max_pairs=8, kernel="fused", workers=1))
    kernel = chunks.FUSED_KERNELS[g][(torch.float64, torch.device("cpu"), 0)]
    assert kernel.capacity == 8
    assert max(s for s in kernel.sub if s < 8) == (1 if cache_bytes == 1 else 6)
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"))
    np.testing.assert_allclose(fast.seed_losses, slow.seed_losses, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(fast.z, slow.z, rtol=1e-7, atol=1e-10)


def test_float32_search_matches_loop_to_float_tolerance():
    g = _generator(dtype=torch.float32, size=16)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    z0 = torch.randn(3, 6)
    cfg = dict(n_seeds=3, steps=5)
    fast = latent_search(g, x, z0, SearchConfig(**cfg))
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"))
    np.testing.assert_allclose(fast.seed_losses, slow.seed_losses, rtol=1e-4)


def test_zero_steps_is_the_plain_reconstruction_loss_of_the_seeds():
    g = _generator()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(5, 6, dtype=torch.float64)
    res = latent_search(g, x, z0, SearchConfig(n_seeds=5, steps=0))
    with torch.no_grad():
        direct = ((g(z0)[None] - x[:, None]) ** 2).flatten(2).sum(-1).numpy()  # (n, seeds)
    np.testing.assert_allclose(res.seed_losses, direct, rtol=1e-12)


def test_search_lowers_the_loss_and_returns_the_loss_after_the_last_update():
    g = _generator()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(4, 6, dtype=torch.float64)
    res = latent_search(g, x, z0, SearchConfig(n_seeds=4, steps=5), record=True)
    assert res.loss_path.shape == (6, 2, 4)
    np.testing.assert_allclose(res.loss_path[-1], res.seed_losses)
    assert (res.loss_path[-1] < res.loss_path[0]).mean() > 0.5
    np.testing.assert_allclose(res.z_path[-1], res.z)


def test_score_of_an_image_does_not_depend_on_its_batch_or_order():
    g = _generator()
    x = torch.rand(5, 1, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(3, 6, dtype=torch.float64)
    cfg = SearchConfig(n_seeds=3, steps=3, max_pairs=4)
    together = latent_search(g, x, z0, cfg).loss
    alone = np.array([latent_search(g, x[i : i + 1], z0, cfg).loss[0] for i in range(5)])
    reversed_ = latent_search(g, x.flip(0), z0, cfg).loss[::-1]
    np.testing.assert_allclose(together, alone, rtol=1e-12)
    np.testing.assert_allclose(together, reversed_, rtol=1e-12)


def test_generator_is_reset_for_every_image_and_left_untouched():
    g = _generator()
    before = {k: v.clone() for k, v in g.state_dict().items()}
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(2, 6, dtype=torch.float64)
    cfg = SearchConfig(n_seeds=2, steps=3, max_pairs=2)
    first = latent_search(g, x, z0, cfg).loss
    # the same image again after a different one: any carried-over theta would change it
    again = latent_search(g, torch.cat([x.flip(-1), x]), z0, cfg).loss[1]
    assert first[0] == pytest.approx(again, rel=1e-12)
    for k, v in g.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_adapting_theta_changes_the_result():
    g = _generator()
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(2, 6, dtype=torch.float64)
    a = latent_search(g, x, z0, SearchConfig(n_seeds=2, steps=3, lr_theta=1e-2)).seed_losses
    b = latent_search(g, x, z0, SearchConfig(n_seeds=2, steps=3, adapt_generator=False)).seed_losses
    assert not np.allclose(a, b)


def test_pair_loss_is_the_squared_l2_norm():
    a = torch.ones(2, 1, 2, 2)
    b = torch.zeros(2, 1, 2, 2)
    assert pair_loss(a, b).tolist() == [4.0, 4.0]


def test_prior_log_density_is_mean_over_seeds():
    g = _generator()
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    z0 = torch.zeros(2, 6, dtype=torch.float64)
    res = latent_search(g, x, z0, SearchConfig(n_seeds=2, steps=0))
    assert res.prior_log_density()[0] == pytest.approx(-3 * np.log(2 * np.pi))


@pytest.mark.parametrize("channels,side,k", [(3, 16, 4), (5, 4, 4), (2, 7, 4)])
def test_patches_equal_unfold(channels, side, k):
    from adgan.search.fused import unfold_patches

    d = torch.randn(3, channels, 2 * side, 2 * side)
    ref = torch.nn.functional.unfold(d, kernel_size=k, stride=2, padding=1)
    dp = torch.nn.functional.pad(d, (1, 1, 1, 1))
    assert torch.equal(unfold_patches(dp, k, side), ref)
    # into a given buffer, from a padded map that is a view inside a larger one
    big = torch.randn(5, channels, 2 * side + 2, 2 * side + 2)
    big[1:4] = dp
    out = torch.full_like(ref, float("nan"))
    assert unfold_patches(big[1:4], k, side, out=out) is out
    assert torch.equal(out, ref)


def test_without_latents_the_result_keeps_losses_and_prior_density():
    g = _generator(size=8)
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(4, 6, dtype=torch.float64)
    cfg = SearchConfig(n_seeds=4, steps=2, max_pairs=5)
    full = latent_search(g, x, z0, cfg)
    lean = latent_search(g, x, z0, cfg, keep_z=False)
    assert lean.z is None and full.z.shape == (3, 4, 6)
    np.testing.assert_array_equal(lean.seed_losses, full.seed_losses)
    np.testing.assert_allclose(lean.prior_log_density(), full.prior_log_density(), rtol=1e-12)
    d = -0.5 * (full.z**2).sum(-1).mean(1) - 3 * np.log(2 * np.pi)
    np.testing.assert_allclose(lean.prior_log_density(), d, rtol=1e-12)


@pytest.mark.parametrize("bn_stats,threads", [("running", None), ("seeds", None), ("running", 4)])
def test_worker_threads_equal_one_worker_and_the_plain_loop(monkeypatch, bn_stats, threads):
    # 3 images x 4 seeds in chunks of 2 pairs (or one image) per worker: the workers finish
    # chunks in any order, and every result lands in its own rows; with 4 torch threads
    # each of the 2 workers runs its operations on 2
    g = _generator(size=16, channels=3)
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(4, 6, dtype=torch.float64)
    # in flight: two chunks of 2 pairs, or of one image (4 pairs) under "seeds"
    cfg = dict(n_seeds=4, steps=3, bn_stats=bn_stats, max_pairs=8 if bn_stats == "seeds" else 4)
    import threading

    from adgan.search import fused

    seen, names, real_run = set(), set(), fused.FusedKernel.run

    def run(self, *args):
        seen.add(torch.get_num_threads())
        names.add(threading.current_thread().name)
        return real_run(self, *args)

    monkeypatch.setattr(fused.FusedKernel, "run", run)
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        done = []
        two = latent_search(
            g, x, z0, SearchConfig(**cfg, workers=2), record=True, progress=done.append
        )
        assert torch.get_num_threads() == (threads or threads_before)
    finally:
        torch.set_num_threads(threads_before)
    assert sum(done) == 3
    assert seen == {2 if threads == 4 else 1}  # torch threads inside each worker
    assert names == {"adgan-search-0", "adgan-search-1"}
    monkeypatch.undo()
    one = latent_search(g, x, z0, SearchConfig(**cfg, workers=1), record=True)
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"), record=True)
    for ref in (one, slow):
        np.testing.assert_allclose(two.seed_losses, ref.seed_losses, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(two.z, ref.z, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(two.loss_path, ref.loss_path, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(two.z_path, ref.z_path, rtol=1e-7, atol=1e-10)


def test_an_error_in_a_worker_reaches_the_caller_and_stops_the_others(monkeypatch):
    import threading

    from adgan.search import fused

    calls = []
    real_run = fused.FusedKernel.run

    def failing_run(self, xs, zs, cfg, record):
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise RuntimeError("chunk failed")
        return real_run(self, xs, zs, cfg, record)

    monkeypatch.setattr(fused.FusedKernel, "run", failing_run)
    g = _generator()
    x = torch.rand(8, 1, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(2, 6, dtype=torch.float64)
    threads_before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="chunk failed"):
        latent_search(g, x, z0, SearchConfig(n_seeds=2, steps=1, max_pairs=2, workers=2))
    # 16 chunks of one pair: after the error each worker stops at its next chunk
    assert 2 <= len(calls) <= 4
    assert all(name.startswith("adgan-search-") for name in calls)
    assert not [t for t in threading.enumerate() if t.name.startswith("adgan-search-")]
    assert torch.get_num_threads() == threads_before


def test_workers_is_checked():
    with pytest.raises(ConfigError, match="workers"):
        SearchConfig(workers=0).validate()


@pytest.mark.parametrize(
    "total,unit,budget,workers",
    [(128, 1, 25, 2), (32, 1, 25, 2), (9, 1, 5, 1), (12, 4, 9, 1), (12, 4, 9, 2), (4, 4, 1, 2),
     (1000, 1, 7, 3), (5, 1, 64, 4), (256, 64, 25, 2), (640, 64, 150, 16), (24, 4, 10, 2)],
)  # fmt: skip
def test_chunks_respect_the_budget_and_spread_evenly_over_the_workers(total, unit, budget, workers):
    from adgan.search.chunks import plan_chunks

    chunk, used = plan_chunks(total, unit, budget, workers)
    assert chunk % unit == 0 and chunk >= unit and 1 <= used <= workers
    # pairs in flight: within the budget, or one chunk of a single unit when a unit (an
    # image's seeds under "seeds" statistics) is larger than the budget
    assert used * chunk <= max(budget, unit)
    sizes = [min(chunk, total - s) for s in range(0, total, chunk)]
    loads = [sum(sizes[w::used]) for w in range(used)]  # taken in turn
    assert max(loads) - min(loads) <= chunk
    if (total, budget, workers) == (32, 25, 2):  # not 12 + 12 + 8: a worker would wait
        assert sizes == [8, 8, 8, 8] and used == 2
    if (total, unit, budget) == (256, 64, 25):  # 64 seeds over a 25-pair budget: one image
        assert (chunk, used) == (64, 1)


def test_the_search_ignores_the_inputs_autograd_history_in_every_worker():
    g = _generator()
    x = (torch.rand(2, 1, 16, 16, dtype=torch.float64) * 2 - 1).requires_grad_()
    z0 = torch.randn(3, 6, dtype=torch.float64).requires_grad_()
    cfg = dict(n_seeds=3, steps=2, max_pairs=2)
    with torch.no_grad():  # the caller's grad mode does not reach the worker threads
        two = latent_search(g, x, z0, SearchConfig(**cfg, workers=2))
    one = latent_search(g, x, z0, SearchConfig(**cfg, workers=1))
    np.testing.assert_allclose(two.seed_losses, one.seed_losses, rtol=1e-12)


def test_workers_default_to_the_threads_while_each_gets_enough_pairs():
    from adgan.search.chunks import worker_count as _workers

    cpu, cfg = torch.device("cpu"), SearchConfig()
    assert _workers(cfg, "fused", cpu, budget=25, threads=2) == 2
    # 16 threads but a budget of 25 pairs: 3 workers of 8 pairs (each then on 5 threads)
    assert _workers(cfg, "fused", cpu, budget=25, threads=16) == 3
    assert _workers(cfg, "fused", cpu, budget=5, threads=2) == 1
    assert _workers(SearchConfig(workers=4), "fused", cpu, budget=5, threads=2) == 4
    assert _workers(cfg, "bmm", cpu, budget=25, threads=2) == 1
    assert _workers(cfg, "fused", torch.device("meta"), budget=25, threads=2) == 1


def test_progress_counts_an_image_when_all_its_seeds_are_done():
    g = _generator()
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(3, 6, dtype=torch.float64)
    done = []
    # 9 pairs in chunks of 5 and 4: the first finishes image 0 and two seeds of image 1
    latent_search(
        g, x, z0, SearchConfig(n_seeds=3, steps=1, max_pairs=5, workers=1), progress=done.append
    )
    assert done == [1, 2]
