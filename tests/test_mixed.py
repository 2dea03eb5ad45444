"""precision="mixed" (adgan.search.mixed): its compiled functions against plain per-pair
float32 arithmetic with the same bfloat16 rounding, and its search against the exact kernel."""

import numpy as np
import pytest
import torch

from adgan.errors import ConfigError
from adgan.nets.dcgan import DCGANConfig, Generator
from adgan.search import SearchConfig, latent_search, mixed, native

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler")
BF = torch.bfloat16


def _lib():
    lib = native.load(torch.float32)
    if lib is None:
        pytest.skip("the compiled kernel could not be built")
    return lib


def _close_bf16(got, want):
    """Equal to within one bfloat16 rounding (float32 arithmetic in another order may land
    on the neighbouring value)."""
    torch.testing.assert_close(got.float(), want.float(), rtol=2 * 2.0**-8, atol=1e-30)


@needs_cc
@pytest.mark.parametrize("cin,N,HW", [(6, 64, 1), (5, 32, 7), (9, 48, 16), (8, 16, 9)])
@pytest.mark.parametrize("first,last", [(True, False), (False, False), (False, True)])
def test_mixed_update_equals_a_plain_loop_over_pairs(cin, N, HW, first, last):
    lib = _lib()
    gen = torch.Generator().manual_seed(cin * N + HW)
    P, lr, betas, eps, step, sc = 3, 1e-2, (0.5, 0.999), 1e-8, 1 if first else 3, 1e-2
    shared = torch.randn(cin, N, generator=gen)
    D = (torch.randn(P, cin, N, generator=gen) * 3).to(BF)
    m = (torch.randn(P, cin, N, generator=gen) * 0.1).to(BF)
    v = (torch.rand(P, cin, N, generator=gen) * 0.1).to(BF)
    dT = torch.randn(P, HW, N, generator=gen)
    hin = torch.randn(P, cin, HW, generator=gen)
    d_in = torch.full((P, cin, HW), float("nan"))
    before = D.clone(), m.clone(), v.clone()
    work = torch.empty(4 * N)
    native.conv_backward_adam_mixed(lib, D, m, v, dT, hin, d_in, work, shared, lr, betas, eps,
                                    step, sc, first, last)  # fmt: skip
    b1, b2 = betas
    for p in range(P):  # plain float32 arithmetic, pair by pair
        D0 = torch.zeros(cin, N) if first else before[0][p].float()
        W = shared + sc * D0
        torch.testing.assert_close(d_in[p], W @ dT[p].T, rtol=2e-4, atol=1e-4)
        g = hin[p] @ dT[p]
        m0 = torch.zeros(cin, N) if first else before[1][p].float()
        v0 = torch.zeros(cin, N) if first else before[2][p].float()
        m1, v1 = b1 * m0 + (1 - b1) * g, b2 * v0 + (1 - b2) * g * g
        upd = lr / (1 - b1**step) * m1 / (v1.sqrt() / (1 - b2**step) ** 0.5 + eps)
        _close_bf16(D[p], (D0 - upd / sc).to(BF))
        if last:  # the moments of the last step are never read: not written
            assert torch.equal(m[p], before[1][p]) and torch.equal(v[p], before[2][p])
        else:
            _close_bf16(m[p], m1.to(BF))
            _close_bf16(v[p], v1.to(BF))


@needs_cc
@pytest.mark.parametrize("cin,N,HW", [(5, 48, 1), (33, 48, 7), (40, 16, 25), (6, 64, 64)])
def test_mixed_forward_equals_per_pair_products(cin, N, HW):
    lib = _lib()
    gen = torch.Generator().manual_seed(cin + N + HW)
    P, sc = 3, 1e-2
    h = torch.randn(P, cin, HW, generator=gen)
    shared = torch.randn(cin, N, generator=gen)
    D = (torch.randn(P, cin, N, generator=gen) * 5).to(BF)
    out = torch.full((P, HW, N), float("nan"))
    native.forward_mixed(lib, h, shared, D, sc, out)
    for p in range(P):
        want = h[p].T @ (shared + sc * D[p].float())
        torch.testing.assert_close(out[p], want, rtol=1e-4, atol=1e-4)


@needs_cc
def test_mixed_functions_refuse_mismatched_tensors():
    lib = _lib()
    D = torch.zeros(2, 4, 16, dtype=BF)
    with pytest.raises(ValueError, match="D: expected"):
        native.forward_mixed(lib, torch.zeros(2, 4, 1), torch.zeros(4, 16), D.float(), 1.0,
                             torch.zeros(2, 1, 16))  # fmt: skip
    with pytest.raises(ValueError, match="scale"):
        native.conv_backward_adam_mixed(
            lib, D, D.clone(), D.clone(), torch.zeros(2, 1, 16), torch.zeros(2, 4, 1), None,
            torch.zeros(64), torch.zeros(4, 16), 1e-3, (0.5, 0.9), 1e-8, 1, 0.0, True, False,
        )  # fmt: skip


def _generator(size=32, channels=3, width=16, latent=16):
    torch.manual_seed(0)
    g = Generator(DCGANConfig(image_size=size, channels=channels, latent_dim=latent, width=width))
    g.train()
    with torch.no_grad():
        g(torch.randn(32, latent))
    return g.eval()


@needs_cc
@pytest.mark.parametrize("bn_stats,size", [("running", 32), ("seeds", 32), ("running", 28)])
def test_mixed_search_agrees_with_the_exact_kernel(bn_stats, size):
    _lib()
    channels = 3 if size == 32 else 1
    g = _generator(size=size, channels=channels)
    assert mixed.kernel_class(g, SearchConfig(precision="mixed")) is mixed.MixedKernel
    x = torch.rand(3, channels, size, size) * 2 - 1
    z0 = torch.randn(8, 16)
    # lr_theta 20 times the paper's, so that the per-seed weights move the losses
    cfg = dict(n_seeds=8, steps=5, lr_theta=1e-3, bn_stats=bn_stats, max_pairs=16)
    exact = latent_search(g, x, z0, SearchConfig(**cfg), record=True)
    mix = latent_search(g, x, z0, SearchConfig(**cfg, precision="mixed"), record=True)
    fixed = latent_search(g, x, z0, SearchConfig(**cfg, adapt_generator=False))
    moved = np.abs(exact.seed_losses - fixed.seed_losses)
    assert moved.mean() > 1e-3 * np.abs(exact.seed_losses).mean()
    # the rounding of the stored state is small against what adapting theta changes (at
    # the paper's lr_theta about a thousandth of it, measured)
    assert np.abs(mix.seed_losses - exact.seed_losses).mean() < 0.01 * moved.mean()
    np.testing.assert_allclose(mix.seed_losses, exact.seed_losses, rtol=1e-2)
    # (Adam moves a latent coordinate whose gradient is near zero by up to lr_z either way)
    assert np.linalg.norm(mix.z - exact.z) < 3e-2 * np.linalg.norm(exact.z)
    # before the first update every pair has the shared weights: the same to float rounding
    np.testing.assert_allclose(mix.loss_path[0], exact.loss_path[0], rtol=1e-6)


@pytest.mark.parametrize("how", ["float64", "native off", "theta fixed"])
def test_mixed_runs_the_exact_kernel_where_it_does_not_apply(how):
    g = _generator(width=8)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    z0 = torch.randn(4, 16)
    cfg = dict(n_seeds=4, steps=3, lr_theta=1e-2)
    if how == "float64":
        g, x, z0 = g.double(), x.double(), z0.double()
    elif how == "native off":
        cfg["native"] = False
    else:
        cfg["adapt_generator"] = False
    assert mixed.kernel_class(g, SearchConfig(**cfg, precision="mixed")) is not mixed.MixedKernel
    exact = latent_search(g, x, z0, SearchConfig(**cfg))
    mix = latent_search(g, x, z0, SearchConfig(**cfg, precision="mixed"))
    np.testing.assert_array_equal(mix.seed_losses, exact.seed_losses)


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ConfigError, match="precision"):
        SearchConfig(precision="half").validate()


@needs_cc
def test_bfloat16_rounding_is_the_same_with_and_without_the_conversion_instruction(
    monkeypatch, tmp_path
):
    # where the CPU has AVX512-BF16 one instruction rounds to bfloat16; ADGAN_NO_BF16 builds
    # the integer rounding instead: both must store the same bits (on other CPUs both builds
    # take the same code)
    import shlex

    lib = _lib()
    monkeypatch.setenv("CC", shlex.join([*native.compiler(), "-DADGAN_NO_BF16"]))
    monkeypatch.setenv("ADGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_libs", {})
    soft = native.load(torch.float32)
    assert soft is not None
    gen = torch.Generator().manual_seed(7)
    P, cin, N, HW = 3, 8, 256, 4
    shared = torch.randn(cin, N, generator=gen)
    start = [(torch.randn(P, cin, N, generator=gen) * s).to(BF) for s in (3, 0.1, 0.1)]
    start[2] = start[2].abs()
    dT = torch.randn(P, HW, N, generator=gen)
    hin = torch.randn(P, cin, HW, generator=gen)
    out = []
    for which in (lib, soft):
        D, m, v = (t.clone() for t in start)
        d_in = torch.empty(P, cin, HW)
        native.conv_backward_adam_mixed(which, D, m, v, dT, hin, d_in, torch.empty(4 * N),
                                        shared, 1e-2, (0.5, 0.999), 1e-8, 3, 1e-2, False,
                                        False)  # fmt: skip
        y = torch.empty(P, HW, N)
        native.forward_mixed(which, hin, shared, D, 1e-2, y)
        out.append((D, m, v, d_in, y))
    for a, b in zip(*out, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(out[0][0], start[0])  # the update did move the change
