"""The search's compiled CPU kernels (``native.c``): built on first use with the machine's C
compiler, kept in a cache directory, loaded with ctypes.

Each (image, seed) pair owns a copy of the generator's weights and two Adam moments, and on
CPU the search is held back by how often they cross the memory bus: torch's operations read a
layer's weights once for the input gradient, write the weight gradient, and read both again
with the moments for Adam. ``conv_backward_adam`` does the two backward products and the
update in one pass over each block of rows. ``forward`` (each pair's product h^T W, with
prefetching for its strided rows), ``fold`` and ``patches`` (the transposed convolution's
col2im and the backward pass's im2col in the layout the other two use) replace the batched
products and copies around them (docs/performance.md has the measurements).

Nothing here is needed: without a C compiler, or with ``ADGAN_NATIVE=0``, ``load`` returns
None and the search runs on torch's operations alone. The library is compiled from the
package's own source only, with ``-march=native``, into a file named by a hash of the source,
the compiler, its flags and this CPU, written atomically; a cached file is only loaded, never
rebuilt in place. A build that failed leaves a ``.failed`` file with the compiler's message
beside where the library would be, and is not tried again with the same compiler. Every
wrapper checks its tensors' shapes, dtype (the library's) and layout before the call: the C
code trusts its arguments.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.c")
_FLAGS = ["-O3", "-fno-math-errno", "-shared", "-fPIC"]
_TYPES = {torch.float32: "float", torch.float64: "double"}
_lock = threading.Lock()
_libs: dict[torch.dtype, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """False when ``ADGAN_NATIVE`` is 0 / false / no / off."""
    return os.environ.get("ADGAN_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path | None:
    """``ADGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/adgan``, else ``~/.cache/adgan``; None
    where there is no home directory to take it from."""
    root = os.environ.get("ADGAN_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "adgan"
    try:
        return Path.home() / ".cache" / "adgan"
    except RuntimeError:
        return None


def _cpu_identity() -> str:
    """What -march=native depends on: the CPU's model and instruction-set flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    keep = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(sorted(set(keep)))


def compiler() -> list[str] | None:
    """The C compiler's command: ``CC`` (which may carry flags, as in "gcc -m64"), else
    ``cc``; None where it is not found."""
    try:
        cmd = shlex.split(os.environ.get("CC") or "cc")
    except ValueError:
        return None
    path = shutil.which(cmd[0]) if cmd else None
    return [path, *cmd[1:]] if path else None


def _build(real: str) -> Path | None:
    cc = compiler()
    if cc is None:
        log.info("adgan: no C compiler found; the search runs on torch's operations only")
        return None
    root = cache_dir()
    try:
        src = SOURCE.read_bytes()
        version = subprocess.run(
            [*cc, "--version"], capture_output=True, text=True, errors="replace", timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.info("adgan: cannot build the compiled kernel (%s)", e)
        return None
    if root is None:
        log.info("adgan: no cache directory for the compiled kernel (set ADGAN_CACHE_DIR)")
        return None
    out_dir = root / "native"
    for arch in (["-march=native"], []):  # some compilers do not know -march=native
        flags = [*_FLAGS, *arch, f"-DREAL={real}"]
        parts = [" ".join(cc[1:] + flags), version, _cpu_identity(), sys.platform]
        key = hashlib.sha256(b"\0".join([src, *(p.encode() for p in parts)])).hexdigest()[:16]
        target = out_dir / f"adgan_native_{real}_{key}.so"
        failed = target.with_suffix(".failed")  # a build that failed here: not tried again
        if target.exists():
            return target
        if failed.exists():
            continue
        try:
            out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
            os.close(fd)
        except OSError as e:
            log.info("adgan: cannot write the compiled kernel to %s (%s)", out_dir, e)
            return None
        try:
            res = subprocess.run(
                [*cc, *flags, "-o", tmp, str(SOURCE), "-lm"],
                capture_output=True, text=True, errors="replace", timeout=120,
            )  # fmt: skip
            if res.returncode == 0:
                os.replace(tmp, target)  # atomic: another process may build the same file
                return target
            log.debug("adgan: %s %s failed: %s", cc, " ".join(flags), res.stderr.strip())
            failed.write_text(res.stderr)  # the compiler's own words, for whoever looks
        except (OSError, subprocess.SubprocessError) as e:
            log.debug("adgan: compiling %s failed: %s", SOURCE.name, e)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    log.info("adgan: the compiled kernel could not be built (%s); the search runs on torch's "
             "operations only", out_dir)  # fmt: skip
    return None


def load(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The compiled kernel for ``dtype`` (float32 or float64), or None where it cannot be
    had: another dtype, ``ADGAN_NATIVE=0``, no compiler, or a failed build."""
    if dtype not in _TYPES or not enabled():
        return None
    with _lock:
        if dtype not in _libs:
            lib = None
            path = _build(_TYPES[dtype])
            if path is not None:
                try:
                    lib = ctypes.CDLL(str(path))  # ctypes releases the GIL during calls
                    fn = lib.adgan_conv_backward_adam
                    fn.restype = None
                    fn.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 8 + [ctypes.c_double] * 5
                    lib.adgan_native_vector.restype = ctypes.c_int
                    lib.adgan_forward.restype = None
                    lib.adgan_forward.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 3
                    lib.adgan_fold.restype = None
                    lib.adgan_fold.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 2
                    lib.adgan_patches.restype = None
                    lib.adgan_patches.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 2
                except (OSError, AttributeError) as e:
                    log.info("adgan: cannot load %s (%s)", path, e)
                    lib = None
            _libs[dtype] = lib
        return _libs[dtype]


def vector_width(lib: ctypes.CDLL) -> int:
    """Values per vector in the kernel: a layer's N must be a multiple of it."""
    return int(lib.adgan_native_vector())


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _lib_dtype(lib: ctypes.CDLL) -> torch.dtype:
    """The REAL the library was compiled with: its vectors are 64 bytes."""
    return {16: torch.float32, 8: torch.float64}[vector_width(lib)]


def _check(lib: ctypes.CDLL, dims: tuple[int, ...], **tensors) -> bool:
    """The C code trusts its arguments: check them here, where a mistake is an exception.
    ``dims``: the sizes passed to C, all positive except the pairs (the first), where 0 means
    nothing to do (returns False). ``tensors``: name=(tensor or None, expected shape)."""
    dtype = _lib_dtype(lib)
    for name, (t, shape) in tensors.items():
        if t is not None and (
            tuple(t.shape) != shape
            or t.dtype != dtype
            or t.device.type != "cpu"
            or not t.is_contiguous()
        ):
            raise ValueError(
                f"{name}: expected a contiguous CPU tensor of shape {shape} and dtype "
                f"{dtype}, got {tuple(t.shape)} {t.dtype} on {t.device}"
            )
    if any(d < 1 for d in dims[1:]) or dims[0] < 0:
        raise ValueError(f"sizes must be positive, got {dims}")
    return dims[0] > 0


def conv_backward_adam(
    lib: ctypes.CDLL,
    W: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    dT: torch.Tensor,
    hin: torch.Tensor,
    d_in: torch.Tensor | None,
    work: torch.Tensor,
    shared: torch.Tensor | None,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    step: int,
) -> None:
    """For each pair p: ``d_in[p] = W[p] @ dT[p].T`` (before the update; skipped when None),
    ``g = hin[p] @ dT[p]``, then one Adam step on ``W[p], m[p], v[p]`` with g. Shapes: W, m, v
    (P, cin, N); dT (P, HW, N); hin and d_in (P, cin, HW); work (4 * N,). With
    ``shared`` (cin, N), Adam's first step: W[p] starts from it and the moments from zero.
    All contiguous CPU tensors of the library's dtype."""
    P, cin, N = W.shape
    HW = dT.shape[1]
    if N % vector_width(lib):
        raise ValueError(f"N={N} must be a multiple of {vector_width(lib)}")
    if step < 1:
        raise ValueError(f"step: Adam's steps count from 1, got {step}")
    if not _check(lib, (P, cin, N, HW), W=(W, (P, cin, N)), m=(m, (P, cin, N)),
                  v=(v, (P, cin, N)), dT=(dT, (P, HW, N)), hin=(hin, (P, cin, HW)),
                  d_in=(d_in, (P, cin, HW)), shared=(shared, (cin, N)),
                  work=(work, (4 * N,))):  # fmt: skip
        return
    lib.adgan_conv_backward_adam(
        P, cin, N, HW, _ptr(W), _ptr(shared), _ptr(m), _ptr(v), _ptr(dT), _ptr(hin),
        _ptr(d_in), _ptr(work), lr, betas[0], betas[1], eps, float(step),
    )  # fmt: skip


def forward(lib: ctypes.CDLL, h: torch.Tensor, W: torch.Tensor, out: torch.Tensor) -> None:
    """``out[p] = h[p].T @ W[p]`` for each pair p: h (P, cin, HW), W (P, cin, N), out
    (P, HW, N), contiguous CPU tensors of the library's dtype, N a multiple of its vector."""
    P, cin, HW = h.shape
    N = W.shape[2]
    if N % vector_width(lib):
        raise ValueError(f"N={N} must be a multiple of {vector_width(lib)}")
    if not _check(lib, (P, cin, N, HW), h=(h, (P, cin, HW)), W=(W, (P, cin, N)),
                  out=(out, (P, HW, N))):  # fmt: skip
        return
    lib.adgan_forward(P, cin, N, HW, _ptr(h), _ptr(W), _ptr(out))


def fold(lib: ctypes.CDLL, cols: torch.Tensor, out: torch.Tensor, k: int) -> None:
    """``F.fold`` of a transposed convolution with kernel 4, stride 2 and padding 1 (DCGAN's)
    from ``forward``'s layout: cols (P, side*side, C*k*k) into out (P, C, 2*side, 2*side),
    overwritten."""
    if k != 4:  # the output is 2*side only for k = 4 (stride 2, padding 1)
        raise ValueError(f"k: the compiled fold has k = 4, got {k}")
    P, HW, N = cols.shape
    side = math.isqrt(HW)
    C = N // (k * k)
    if side * side != HW or C * k * k != N:
        raise ValueError(f"cols: expected (P, side*side, C*{k}*{k}), got {tuple(cols.shape)}")
    if not _check(lib, (P, C, side), cols=(cols, (P, HW, N)),
                  out=(out, (P, C, 2 * side, 2 * side))):  # fmt: skip
        return
    lib.adgan_fold(P, C, k, side, _ptr(cols), _ptr(out))


def patches(lib: ctypes.CDLL, dp: torch.Tensor, k: int, out: torch.Tensor) -> None:
    """The patches a stride-2 transposed convolution's backward pass reads, in its layout:
    ``out[p, y * side + x, (c, i, j)] = dp[p, c, 2y + i, 2x + j]``; dp (P, C, 2*side + 2,
    2*side + 2) is the output gradient inside a zero border of one, out (P, side*side,
    C*k*k)."""
    if k != 4:
        raise ValueError(f"k: the compiled patches have k = 4, got {k}")
    P, C, S = dp.shape[:3]
    side = (S - 2) // 2
    if not _check(lib, (P, C, side), dp=(dp, (P, C, 2 * side + 2, 2 * side + 2)),
                  out=(out, (P, side * side, C * k * k))):  # fmt: skip
        return
    lib.adgan_patches(P, C, k, side, _ptr(dp), _ptr(out))
