"""The search's compiled CPU kernel (adgan.search.native): against per-pair torch products and
torch.optim.Adam, inside the search against torch's operations and the plain loop, and its
build, cache and fallbacks."""

import os
import threading

import numpy as np
import pytest
import torch

from adgan.nets.dcgan import DCGANConfig, Generator
from adgan.search import SearchConfig, latent_search, native

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler")


def _adam(W, m, v, g, lr, betas, eps, step):
    """One torch.optim.Adam step from moments at step - 1 (none on the first step)."""
    p = torch.nn.Parameter(W.clone())
    opt = torch.optim.Adam([p], lr=lr, betas=betas, eps=eps)
    if step > 1:
        opt.state[p] = {"step": torch.tensor(float(step - 1)), "exp_avg": m.clone(),
                        "exp_avg_sq": v.clone()}  # fmt: skip
    p.grad = g.clone()
    opt.step()
    return p.detach(), opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cin,N,HW", [(6, 64, 1), (5, 32, 7), (9, 48, 16), (4, 16, 3), (8, 16, 9)])
@pytest.mark.parametrize("first,with_din", [(False, True), (True, False), (False, False)])
def test_kernel_equals_per_pair_products_and_torch_adam(dtype, cin, N, HW, first, with_din):
    lib = native.load(dtype)
    assert lib is not None
    gen = torch.Generator().manual_seed(cin * N + HW)
    P, lr, betas, eps, step = 3, 1e-2, (0.5, 0.999), 1e-8, 1 if first else 3
    W = torch.randn(P, cin, N, dtype=dtype, generator=gen)
    m = torch.randn(P, cin, N, dtype=dtype, generator=gen) * 0.1
    v = torch.rand(P, cin, N, dtype=dtype, generator=gen) * 0.1
    shared = torch.randn(cin, N, dtype=dtype, generator=gen) if first else None
    dT = torch.randn(P, HW, N, dtype=dtype, generator=gen)
    hin = torch.randn(P, cin, HW, dtype=dtype, generator=gen)
    d_in = torch.full((P, cin, HW), float("nan"), dtype=dtype) if with_din else None
    before = W.clone(), m.clone(), v.clone()
    work = torch.empty(4 * N, dtype=dtype)
    native.conv_backward_adam(lib, W, m, v, dT, hin, d_in, work, shared, lr, betas, eps, step)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-4, atol=1e-5)
    for p in range(P):  # a plain loop over pairs
        src = shared if first else before[0][p]
        if with_din:
            torch.testing.assert_close(d_in[p], src @ dT[p].T, **tol)
        g = hin[p] @ dT[p]
        ref = _adam(src, before[1][p], before[2][p], g, lr, betas, eps, step)
        for got, want in zip((W[p], m[p], v[p]), ref, strict=True):
            torch.testing.assert_close(got, want, **tol)


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cin,N,HW", [(6, 64, 1), (9, 48, 16)])
def test_last_step_leaves_the_moments_and_writes_the_same_weights(dtype, cin, N, HW):
    lib = native.load(dtype)
    gen = torch.Generator().manual_seed(cin + N + HW)
    P = 2
    W = torch.randn(P, cin, N, dtype=dtype, generator=gen)
    m = torch.randn(P, cin, N, dtype=dtype, generator=gen) * 0.1
    v = torch.rand(P, cin, N, dtype=dtype, generator=gen) * 0.1
    dT = torch.randn(P, HW, N, dtype=dtype, generator=gen)
    hin = torch.randn(P, cin, HW, dtype=dtype, generator=gen)
    out = {}
    for last in (False, True):
        st = [t.clone() for t in (W, m, v)]
        d_in = torch.empty(P, cin, HW, dtype=dtype)
        native.conv_backward_adam(lib, *st, dT, hin, d_in, torch.empty(4 * N, dtype=dtype),
                                  None, 1e-2, (0.5, 0.999), 1e-8, 4, last=last)  # fmt: skip
        out[last] = st + [d_in]
    assert torch.equal(out[True][0], out[False][0])  # the weights, bit for bit
    assert torch.equal(out[True][3], out[False][3])  # the input gradient
    assert torch.equal(out[True][1], m) and torch.equal(out[True][2], v)  # not written
    assert not torch.equal(out[False][1], m)  # (where they are written otherwise)


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cin,N,HW", [(5, 48, 1), (33, 48, 7), (40, 16, 25), (6, 64, 64),
                                      (3, 112, 3), (7, 32, 16), (2, 16, 49), (9, -3, 12),
                                      (4, -5, 7), (35, -1, 6)])  # fmt: skip
def test_forward_product_equals_per_pair_products(dtype, cin, N, HW):
    # position blocks of 16 (or 8 with 16 registers), 8, 4, 2 and 1, vector blocks with tails
    # (N < 0: -N vectors of this library, so odd counts of vectors too), row blocks of 32 + tail
    lib = native.load(dtype)
    if N < 0:
        N = -N * native.vector_width(lib)
    gen = torch.Generator().manual_seed(cin + N + HW)
    P = 3
    h = torch.randn(P, cin, HW, dtype=dtype, generator=gen)
    W = torch.randn(P, cin, N, dtype=dtype, generator=gen)
    out = torch.full((P, HW, N), float("nan"), dtype=dtype)
    native.forward(lib, h, W, out)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for p in range(P):
        torch.testing.assert_close(out[p], h[p].T @ W[p], **tol)


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("C,side,k", [(1, 7, 4), (3, 4, 4), (2, 1, 4), (5, 3, 2)])
def test_fold_and_patches_equal_torch_fold_and_unfold(dtype, C, side, k):
    lib = native.load(dtype)
    P, S = 2, 2 * side
    gen = torch.Generator().manual_seed(C * side * k)
    cols = torch.randn(P, side * side, C * k * k, dtype=dtype, generator=gen)
    out = torch.full((P, C, S, S), float("nan"), dtype=dtype)
    if k != 4:  # DCGAN's kernel only
        with pytest.raises(ValueError, match="k = 4"):
            native.fold(lib, cols, out, k)
        return
    native.fold(lib, cols, out, k)
    want = torch.nn.functional.fold(cols.transpose(1, 2), (S, S), k, padding=1, stride=2)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-5)
    # the patches of a map S x S for a stride-2 transposed convolution's backward pass
    d = torch.randn(P, C, S, S, dtype=dtype, generator=gen)
    dp = torch.nn.functional.pad(d, (1, 1, 1, 1))
    got = torch.full((P, side * side, C * k * k), float("nan"), dtype=dtype)
    native.patches(lib, dp, k, got)
    want = torch.nn.functional.unfold(d, k, padding=1, stride=2).transpose(1, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def _generator(size=32, width=4, latent=6, channels=3):
    torch.manual_seed(0)
    g = Generator(DCGANConfig(image_size=size, channels=channels, latent_dim=latent, width=width))
    g = g.double().train()
    with torch.no_grad():
        g(torch.randn(32, latent, dtype=torch.float64))
    return g.eval()


@needs_cc
@pytest.mark.parametrize(
    "bn_stats,workers,threads,size",
    [("running", 2, 2, 32), ("running", 1, 2, 32), ("seeds", 1, 1, 32), ("running", 2, 2, 28)],
)
def test_search_with_the_kernel_equals_torch_ops_and_the_plain_loop(
    monkeypatch, bn_stats, workers, threads, size
):
    # a 32x32 generator: the first layer and the 4x4, 8x8 and 16x16 maps' layers' backward
    # passes run in the kernel, the 16x16 -> 32x32 layer's (256 positions) on torch's
    # products; a 28x28 one: a 7x7 first layer, then 7x7 (49 positions) and 14x14 (196) maps
    g = _generator(size=size, channels=3 if size == 32 else 1)
    channels = 3 if size == 32 else 1
    x = torch.rand(3, channels, size, size, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(4, 6, dtype=torch.float64)
    cfg = dict(n_seeds=4, steps=3, bn_stats=bn_stats, max_pairs=8)
    calls, real = [], native.conv_backward_adam
    # with two workers each one's first call waits for the other's: the chunks come from a
    # shared queue, so on a loaded machine one worker could otherwise drain it alone; a
    # worker that never runs a chunk breaks the barrier and fails the test
    meet, seen = threading.Barrier(2, timeout=120), set()

    def spy(lib, W, m, v, dT, hin, d_in, work, shared, *args, **kw):
        name = threading.current_thread().name
        calls.append((dT.shape[1], shared is not None, d_in is not None, name))
        if workers == 2 and name not in seen:
            seen.add(name)
            meet.wait()
        return real(lib, W, m, v, dT, hin, d_in, work, shared, *args, **kw)

    monkeypatch.setattr(native, "conv_backward_adam", spy)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fast = latent_search(g, x, z0, SearchConfig(**cfg, workers=workers), record=True)
        n_fast = len(calls)
        plain = latent_search(
            g, x, z0, SearchConfig(**cfg, workers=workers, native=False), record=True
        )
    finally:
        torch.set_num_threads(threads_before)
    assert n_fast > 0 and len(calls) == n_fast  # native=False: torch's operations alone
    assert {c[0] for c in calls} == ({1, 16, 64} if size == 32 else {1, 49})
    assert {(c[1], c[2]) for c in calls} == {(True, False), (False, True)}  # first step, later
    names = {c[3].split("_")[0] for c in calls}
    if workers == 1 and threads == 2:  # one worker with two threads splits the pairs
        assert names == {"adgan-native"}
    elif workers == 2:
        assert names == {"adgan-search-0", "adgan-search-1"}
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"), record=True)
    for ref in (plain, slow):
        np.testing.assert_allclose(fast.seed_losses, ref.seed_losses, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(fast.z_path, ref.z_path, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(fast.loss_path, ref.loss_path, rtol=1e-7, atol=1e-10)


@needs_cc
def test_float32_search_with_the_kernel_matches_torch_ops():
    g = _generator(size=16, width=8, latent=16).float()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z0 = torch.randn(8, 16)
    # a learning rate for theta large enough that its updates move the losses
    cfg = dict(n_seeds=8, steps=5, lr_theta=2e-2)
    fast = latent_search(g, x, z0, SearchConfig(**cfg))
    plain = latent_search(g, x, z0, SearchConfig(**cfg, native=False))
    fixed = latent_search(g, x, z0, SearchConfig(**cfg, adapt_generator=False))
    assert not np.allclose(fast.seed_losses, fixed.seed_losses, rtol=1e-2)
    np.testing.assert_allclose(fast.seed_losses, plain.seed_losses, rtol=1e-4)
    np.testing.assert_allclose(fast.z, plain.z, rtol=1e-4, atol=1e-5)


@needs_cc
def test_the_build_is_cached_and_written_whole(monkeypatch, tmp_path):
    monkeypatch.setenv("ADGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_libs", {})
    assert native.load(torch.float32) is not None
    built = sorted((tmp_path / "native").iterdir())
    # the library and its digest; no temporary file left
    assert [p.suffix for p in built] == [".sha256", ".so"]
    assert built[0].stem == built[1].stem
    stamp = built[1].stat().st_mtime_ns
    monkeypatch.setattr(native, "_libs", {})
    assert native.load(torch.float32) is not None
    assert sorted((tmp_path / "native").iterdir()) == built
    assert built[1].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert native.load(torch.float64) is not None
    assert len(list((tmp_path / "native").iterdir())) == 4


def test_other_dtypes_have_no_compiled_kernel():
    assert native.load(torch.bfloat16) is None and native.load(torch.float16) is None


@pytest.mark.parametrize("how", ["disabled", "no compiler", "compiler fails"])
def test_without_the_kernel_the_search_runs_on_torch_ops(monkeypatch, tmp_path, how):
    monkeypatch.setenv("ADGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_libs", {})
    if how == "disabled":
        monkeypatch.setenv("ADGAN_NATIVE", "0")
    elif how == "no compiler":
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    else:
        if os.name != "posix":
            pytest.skip("the fake failing compiler is a /bin/sh script: POSIX only")
        fake, calls = tmp_path / "fake-cc", tmp_path / "calls"
        script = f"#!/bin/sh\necho \"$@\" >> {calls}\necho 'fake-cc 1.0'\nexit 1\n"
        fake.write_text(script)  # logs its calls, names itself, fails every build
        fake.chmod(0o755)
        monkeypatch.setenv("CC", f"{fake} -DANY_FLAG")  # a compiler command with a flag
    assert native.load(torch.float64) is None
    if how == "compiler fails":
        files = sorted(p.suffix for p in (tmp_path / "native").iterdir())
        assert files == [".failed", ".failed"]  # with and without -march=native; no .so left
        assert len(calls.read_text().splitlines()) == 3  # --version, then two builds
        monkeypatch.setattr(native, "_libs", {})
        assert native.load(torch.float64) is None  # the failure is remembered
        assert len(calls.read_text().splitlines()) == 4  # --version only
    g = _generator(size=16)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(3, 6, dtype=torch.float64)
    cfg = dict(n_seeds=3, steps=2)
    fast = latent_search(g, x, z0, SearchConfig(**cfg))
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"))
    np.testing.assert_allclose(fast.seed_losses, slow.seed_losses, rtol=1e-7, atol=1e-10)


@needs_cc
def test_the_kernel_refuses_mismatched_tensors():
    lib = native.load(torch.float32)
    W = torch.zeros(2, 4, 16)
    args = dict(m=torch.zeros(2, 4, 16), v=torch.zeros(2, 4, 16), dT=torch.zeros(2, 3, 16),
                hin=torch.zeros(2, 4, 3), d_in=None, work=torch.zeros(64), shared=None,
                lr=1e-3, betas=(0.5, 0.999), eps=1e-8, step=1)  # fmt: skip
    native.conv_backward_adam(lib, W, **args)
    with pytest.raises(ValueError, match="hin"):
        native.conv_backward_adam(lib, W, **{**args, "hin": torch.zeros(2, 4, 5)})
    with pytest.raises(ValueError, match="dT"):
        native.conv_backward_adam(lib, W, **{**args, "dT": torch.zeros(2, 16, 3).transpose(1, 2)})
    with pytest.raises(ValueError, match="m: .*float32"):
        native.conv_backward_adam(lib, W, **{**args, "m": torch.zeros(2, 4, 16).double()})
    with pytest.raises(ValueError, match="work"):
        native.conv_backward_adam(lib, W, **{**args, "work": torch.zeros(8)})
    with pytest.raises(ValueError, match="work"):  # not contiguous
        native.conv_backward_adam(lib, W, **{**args, "work": torch.zeros(1).expand(64)})
    with pytest.raises(ValueError, match="step"):
        native.conv_backward_adam(lib, W, **{**args, "step": 0})
    # tensors of another dtype than the library's own
    lib64 = native.load(torch.float64)
    with pytest.raises(ValueError, match="float64"):
        native.fold(lib64, torch.zeros(1, 16, 16), torch.zeros(1, 1, 8, 8), 4)
    with pytest.raises(ValueError, match="float64"):
        native.conv_backward_adam(lib64, W, **args)
    # empty sizes: no pairs is nothing to do, an empty layer is an error
    native.forward(lib, torch.zeros(0, 4, 3), torch.zeros(0, 4, 16), torch.zeros(0, 3, 16))
    with pytest.raises(ValueError, match="positive"):
        native.forward(lib, torch.zeros(2, 0, 3), torch.zeros(2, 0, 16), torch.zeros(2, 3, 16))
    with pytest.raises(ValueError, match="out"):
        native.forward(lib, torch.zeros(2, 4, 3), W, torch.zeros(2, 16, 3))
    with pytest.raises(ValueError, match="multiple"):
        native.forward(lib, torch.zeros(2, 4, 3), torch.zeros(2, 4, 7), torch.zeros(2, 3, 7))
    with pytest.raises(ValueError, match="cols"):
        native.fold(lib, torch.zeros(2, 5, 16), torch.zeros(2, 1, 4, 4), 4)
    with pytest.raises(ValueError, match="out"):
        native.fold(lib, torch.zeros(2, 4, 16), torch.zeros(2, 1, 2, 2), 4)
    with pytest.raises(ValueError, match="out"):
        native.patches(lib, torch.zeros(2, 1, 6, 6), 4, torch.zeros(2, 4, 4))


PLANTED = """
#include <stdio.h>
__attribute__((constructor)) static void planted(void)
{
    FILE *f = fopen("%s", "w");
    if (f) fclose(f);
}
int adgan_native_vector(void) { return 8; }
"""


def _plant(tmp_path, targets, digest: bool):
    """A library whose constructor writes a marker file, at each of ``targets``, with (or
    without) the digest file a build writes beside it."""
    import hashlib
    import shutil
    import subprocess

    marker = tmp_path / "planted-code-ran"
    src = tmp_path / "planted.c"
    src.write_text(PLANTED % marker)
    so = tmp_path / "planted.so"
    subprocess.run([*native.compiler(), "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    for target, _ in targets:
        shutil.copy(so, target)
        if digest:
            target.with_suffix(".sha256").write_text(hashlib.sha256(so.read_bytes()).hexdigest())
    return marker


@needs_cc
@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file ownership")
@pytest.mark.parametrize("shared", ["cache", "native"])
def test_a_library_planted_in_a_shared_cache_directory_is_not_loaded(
    monkeypatch, tmp_path, caplog, shared
):
    root = tmp_path / "cache"
    monkeypatch.setenv("ADGAN_CACHE_DIR", str(root))
    monkeypatch.setattr(native, "_libs", {})
    monkeypatch.setattr(native, "_warned", set())
    targets = native.library_targets(native.compiler(), "double")  # makes the folders
    marker = _plant(tmp_path, targets, digest=True)  # even with the right digest beside it
    (root if shared == "cache" else root / "native").chmod(0o777)  # anyone may write there
    with caplog.at_level("WARNING", logger="adgan.search.native"):
        assert native.load(torch.float64) is None
        native.load(torch.float64)
    assert not marker.exists()  # its code never ran
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "others can write to it" in warnings[0].getMessage()
    # the search runs on torch's operations
    g = _generator(size=16)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(2, 6, dtype=torch.float64)
    fast = latent_search(g, x, z0, SearchConfig(n_seeds=2, steps=2))
    slow = latent_search(g, x, z0, SearchConfig(n_seeds=2, steps=2, kernel="loop"))
    np.testing.assert_allclose(fast.seed_losses, slow.seed_losses, rtol=1e-7, atol=1e-10)


@needs_cc
@pytest.mark.parametrize("digest", ["none", "other"])
def test_a_library_without_the_recorded_digest_is_rebuilt_not_loaded(monkeypatch, tmp_path, digest):
    root = tmp_path / "cache"
    monkeypatch.setenv("ADGAN_CACHE_DIR", str(root))
    monkeypatch.setattr(native, "_libs", {})
    targets = native.library_targets(native.compiler(), "double")
    marker = _plant(tmp_path, targets, digest=False)
    if digest == "other":
        for target, _ in targets:
            target.with_suffix(".sha256").write_text("0" * 64 + "\n")
    lib = native.load(torch.float64)
    assert not marker.exists()
    assert lib is not None and native._lib_dtype(lib) == torch.float64  # the real kernel, rebuilt
    assert lib.adgan_conv_backward_adam is not None


def test_a_build_that_times_out_is_remembered_and_reported_once(monkeypatch, tmp_path, caplog):
    if os.name != "posix":
        pytest.skip("the slow fake compiler is a /bin/sh script: POSIX only")
    monkeypatch.setenv("ADGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_libs", {})
    monkeypatch.setattr(native, "_warned", set())
    monkeypatch.setattr(native, "BUILD_SECONDS", 0.2)
    fake = tmp_path / "slow-cc"
    fake.write_text('#!/bin/sh\ncase "$1" in --version) echo slow-cc;; *) exec sleep 5;; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with caplog.at_level("WARNING", logger="adgan.search.native"):
        assert native.load(torch.float64) is None
        monkeypatch.setattr(native, "_libs", {})
        assert native.load(torch.float64) is None  # remembered: not built again
    failed = sorted((tmp_path / "native").glob("*.failed"))
    assert len(failed) == 2 and "longer than" in failed[0].read_text()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "delete the .failed files" in warnings[0] and "ADGAN_NATIVE=0" in warnings[0]


@needs_cc
@pytest.mark.parametrize("vector_bytes", [16, 32, 64])
def test_every_vector_width_gives_the_plain_loops_results(monkeypatch, tmp_path, vector_bytes):
    # the kernel's vectors match the machine's registers (16, 32 or 64 bytes); each width,
    # built here whatever the machine, must compute the same search in float64 and the
    # same "mixed" update (bfloat16 state) in float32
    import shlex

    monkeypatch.setenv("CC", shlex.join([*native.compiler(), f"-DVB={vector_bytes}"]))
    monkeypatch.setenv("ADGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_libs", {})
    lib64, lib32 = native.load(torch.float64), native.load(torch.float32)
    assert lib64 is not None and lib32 is not None
    assert native.vector_width(lib64) == vector_bytes // 8
    assert native.vector_width(lib32) == vector_bytes // 4
    g = _generator(size=32, width=8)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1
    z0 = torch.randn(3, 6, dtype=torch.float64)
    cfg = dict(n_seeds=3, steps=3, max_pairs=6)
    fast = latent_search(g, x, z0, SearchConfig(**cfg), record=True)
    slow = latent_search(g, x, z0, SearchConfig(**cfg, kernel="loop"), record=True)
    np.testing.assert_allclose(fast.loss_path, slow.loss_path, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(fast.z, slow.z, rtol=1e-7, atol=1e-10)
    # "mixed" (bfloat16 state) at this width against the exact float32 kernel: the lanes of
    # the 16-bit loads and stores in the right places, or the losses would differ widely
    g = g.float()
    x, z0 = x.float(), torch.randn(4, 6)
    cfg = dict(n_seeds=4, steps=5, lr_theta=2e-2, max_pairs=8)
    exact = latent_search(g, x, z0, SearchConfig(**cfg))
    plain = latent_search(g, x, z0, SearchConfig(**cfg, native=False))
    mix = latent_search(g, x, z0, SearchConfig(**cfg, precision="mixed"))
    fixed = latent_search(g, x, z0, SearchConfig(**cfg, adapt_generator=False))
    np.testing.assert_allclose(exact.seed_losses, plain.seed_losses, rtol=1e-4)
    moved = np.abs(exact.seed_losses - fixed.seed_losses).mean()
    assert moved > 1e-3 * np.abs(exact.seed_losses).mean()
    # (bfloat16 rounding: 1.6% of what adapting theta moves at this lr_theta, measured at
    # every width; state stored in the wrong lanes would scramble the weights)
    assert np.abs(mix.seed_losses - exact.seed_losses).mean() < 0.05 * moved
