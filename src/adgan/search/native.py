"""The search's compiled CPU kernels (``native.c``): built on first use with the machine's C
compiler, kept in a private cache directory, checked and loaded with ctypes.

Each (image, seed) pair owns a copy of the generator's weights and two Adam moments, and on
CPU the search is held back by how often they cross the memory bus: torch's operations read a
layer's weights once for the input gradient, write the weight gradient, and read both again
with the moments for Adam. ``conv_backward_adam`` does the two backward products and the
update in one pass over each block of rows. ``forward`` (each pair's product h^T W, with
prefetching for its strided rows), ``fold`` and ``patches`` (the transposed convolution's
col2im and the backward pass's im2col in the layout the other two use) replace the batched
products and copies around them (docs/performance.md has the measurements: the whole search
1.22 to 1.24 times as fast on 2 cores).

Nothing here is needed: without a C compiler, or with ``ADGAN_NATIVE=0``, ``load`` returns
None and the search runs on torch's operations alone.

Why on first use and not when the package is installed: the library is compiled with
``-march=native`` for the CPU that runs the search (a wheel built elsewhere could not be),
the package stays pure Python (installs need no compiler), and a machine without one loses
only the speed-up.

Safety: a shared library runs code as soon as it is loaded, so one is loaded only

* from a cache directory (``ADGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/adgan``, else
  ``~/.cache/adgan``) and a ``native`` folder in it that the current user owns and no one
  else can write (else a warning, once, and torch's operations);
* if the file, owned by the user and writable by no one else, has the SHA-256 digest
  recorded beside it (``.sha256``, written atomically by the build in the same folder); a
  file without one, or with another digest, is rebuilt, never loaded. The digest is taken
  from the open file that is then loaded (through ``/proc/self/fd`` where there is one), so
  the file cannot change between the check and the load.

The library is compiled from the package's own source only, into a file named by a hash of
the source, the compiler, its flags and this CPU, written atomically. A build that failed
or timed out leaves a ``.failed`` file with the compiler's message where the library would
be, is not tried again, and is reported once per process at WARNING, with how to retry.
Every wrapper checks its tensors' shapes, dtype (the library's) and layout before the call:
the C code trusts its arguments.
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
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.c")
BUILD_SECONDS = 120  # a build that takes longer is stopped, and remembered as failed
_FLAGS = ["-O3", "-fno-math-errno", "-shared", "-fPIC"]
_TYPES = {torch.float32: "float", torch.float64: "double"}
_lock = threading.Lock()
_libs: dict[torch.dtype, ctypes.CDLL | None] = {}
_warned: set[str] = set()
_kept_fds: list[int] = []  # descriptors of the loaded libraries (see _open_checked)


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


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


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


def _unsafe(st: os.stat_result) -> str | None:
    """Why a file or folder with this status may not hold a library we load, or None."""
    if not hasattr(os, "getuid"):
        return "its owner cannot be checked on this system"
    if st.st_uid != os.getuid():
        return "it belongs to another user"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "others can write to it"
    return None


def private_dir() -> Path | None:
    """The folder for compiled libraries (``native`` in the cache directory), made if
    needed; None (with a warning, once) where it or the cache directory is not the user's
    own or others can write to it, or where it cannot be made."""
    root = cache_dir()
    if root is None:
        log.info("adgan: no cache directory for the compiled kernel (set ADGAN_CACHE_DIR)")
        return None
    out = root / "native"
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        out.mkdir(exist_ok=True, mode=0o700)
        for d in (root, out):
            why = _unsafe(os.stat(d, follow_symlinks=False)) or (
                "it is a link" if d.is_symlink() else None
            )
            if why:
                _warn_once(
                    f"dir {d}",
                    "adgan: not using the compiled kernel from %s: %s; the search runs on "
                    "torch's operations (point ADGAN_CACHE_DIR to a folder of your own)",
                    d,
                    why,
                )
                return None
    except OSError as e:
        log.info("adgan: cannot use %s for the compiled kernel (%s)", out, e)
        return None
    return out


def library_targets(cc: list[str], real: str) -> list[tuple[Path, list[str]]]:
    """(library path, compiler flags) to try in order, in the private folder (none where
    there is none): with -march=native, then without (some compilers do not know it)."""
    out_dir = private_dir()
    if out_dir is None:
        return []
    src = SOURCE.read_bytes()
    version = subprocess.run(
        [*cc, "--version"], capture_output=True, text=True, errors="replace", timeout=30
    ).stdout
    out = []
    for arch in (["-march=native"], []):
        flags = [*_FLAGS, *arch, f"-DREAL={real}"]
        parts = [" ".join(cc[1:] + flags), version, _cpu_identity(), sys.platform]
        key = hashlib.sha256(b"\0".join([src, *(p.encode() for p in parts)])).hexdigest()[:16]
        out.append((out_dir / f"adgan_native_{real}_{key}.so", flags))
    return out


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _compile(cc: list[str], flags: list[str], target: Path) -> bool:
    """Build ``target`` and its digest file; on failure or timeout write ``.failed``."""
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        try:
            res = subprocess.run(
                [*cc, *flags, "-o", tmp, str(SOURCE), "-lm"],
                capture_output=True, text=True, errors="replace", timeout=BUILD_SECONDS,
            )  # fmt: skip
            why = (res.stderr or f"exit status {res.returncode}\n") if res.returncode else ""
        except subprocess.TimeoutExpired:
            why = f"the build took longer than {BUILD_SECONDS} s and was stopped\n"
        if why:
            log.debug("adgan: %s %s failed: %s", cc, " ".join(flags), why.strip())
            _atomic_text(target.with_suffix(".failed"), why)  # the compiler's own words
            return False
        digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, target)  # atomic: another process may build the same file
        _atomic_text(target.with_suffix(".sha256"), digest + "\n")
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open_checked(target: Path) -> ctypes.CDLL | None:
    """The library at ``target`` if it is the user's own, writable by no one else, and its
    digest is the recorded one; None otherwise (it is then rebuilt)."""
    digest_file = target.with_suffix(".sha256")
    try:
        recorded = digest_file.read_text().strip()
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        why = _unsafe(os.fstat(fd))
        h = hashlib.sha256()
        with os.fdopen(os.dup(fd), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if why or h.hexdigest() != recorded:
            _warn_once(
                f"digest {target}",
                "adgan: %s is not the library built here (%s); building it again",
                target,
                why or "its digest differs from the recorded one",
            )
            return None
        # load the file just read, not whatever the name points to now; the descriptor
        # stays open, so that its number (the loader knows a library by that name) is not
        # given to another library
        proc = f"/proc/self/fd/{fd}"
        try:
            if not os.path.exists(proc):
                return ctypes.CDLL(str(target))
            lib = ctypes.CDLL(proc)
        except OSError as e:
            log.info("adgan: cannot load %s (%s)", target, e)
            return None
        _kept_fds.append(fd)
        fd = -1
        return lib
    finally:
        if fd >= 0:
            os.close(fd)


def _build_and_open(real: str) -> ctypes.CDLL | None:
    cc = compiler()
    if cc is None:
        log.info("adgan: no C compiler found; the search runs on torch's operations only")
        return None
    try:
        targets = library_targets(cc, real)
    except (OSError, subprocess.SubprocessError) as e:
        log.info("adgan: cannot build the compiled kernel (%s)", e)
        return None
    failed = None
    for target, flags in targets:
        if target.with_suffix(".failed").exists():
            failed = target.with_suffix(".failed")
            continue
        lib = _open_checked(target)
        if lib is None:
            try:
                built = _compile(cc, flags, target)
            except OSError as e:
                log.info("adgan: cannot write the compiled kernel to %s (%s)", target.parent, e)
                return None
            lib = _open_checked(target) if built else None
            if lib is None:
                failed = target.with_suffix(".failed")
                if built:  # built, but it does not load
                    _atomic_text(failed, "the library was built but could not be loaded\n")
                continue
        return lib
    if failed is not None:
        _warn_once(
            f"failed {failed.parent}",
            "adgan: the compiled kernel could not be built (the compiler's message is in "
            "%s); the search runs on torch's operations. To try again, delete the .failed "
            "files there; ADGAN_NATIVE=0 turns the compiled kernel off",
            failed,
        )
    return None


def load(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The compiled kernel for ``dtype`` (float32 or float64), or None where it cannot be
    had: another dtype, ``ADGAN_NATIVE=0``, no compiler, a failed build, or a cache
    directory that is not the user's own."""
    if dtype not in _TYPES or not enabled():
        return None
    with _lock:
        if dtype not in _libs:
            lib = _build_and_open(_TYPES[dtype])
            if lib is not None:
                try:
                    fn = lib.adgan_conv_backward_adam
                    fn.restype = None
                    fn.argtypes = ([ctypes.c_int] * 4 + [ctypes.c_void_p] * 8
                                   + [ctypes.c_double] * 5 + [ctypes.c_int])  # fmt: skip
                    lib.adgan_native_vector.restype = ctypes.c_int
                    lib.adgan_native_real_bytes.restype = ctypes.c_int
                    lib.adgan_forward.restype = None
                    lib.adgan_forward.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 3
                    lib.adgan_fold.restype = None
                    lib.adgan_fold.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 2
                    lib.adgan_patches.restype = None
                    lib.adgan_patches.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 2
                    fn = lib.adgan_conv_backward_adam_mixed
                    fn.restype = None
                    fn.argtypes = ([ctypes.c_int] * 4 + [ctypes.c_void_p] * 8
                                   + [ctypes.c_double] * 6 + [ctypes.c_int] * 2)  # fmt: skip
                    lib.adgan_forward_mixed.restype = None
                    lib.adgan_forward_mixed.argtypes = (
                        [ctypes.c_int] * 4 + [ctypes.c_void_p] * 3
                        + [ctypes.c_double, ctypes.c_void_p]
                    )  # fmt: skip
                except AttributeError as e:
                    log.info("adgan: the compiled kernel lacks a function (%s)", e)
                    lib = None
            _libs[dtype] = lib
        return _libs[dtype]


def vector_width(lib: ctypes.CDLL) -> int:
    """Values per vector in the kernel: a layer's N must be a multiple of it."""
    return int(lib.adgan_native_vector())


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _lib_dtype(lib: ctypes.CDLL) -> torch.dtype:
    """The REAL the library was compiled with."""
    return {4: torch.float32, 8: torch.float64}[int(lib.adgan_native_real_bytes())]


def _check(lib: ctypes.CDLL, dims: tuple[int, ...], **tensors) -> bool:
    """The C code trusts its arguments: check them here, where a mistake is an exception.
    ``dims``: the sizes passed to C, all positive except the pairs (the first), where 0 means
    nothing to do (returns False). ``tensors``: name=(tensor or None, expected shape), or
    (tensor, shape, dtype) for another dtype than the library's."""
    for name, (t, shape, *own) in tensors.items():
        dtype = own[0] if own else _lib_dtype(lib)
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
    last: bool = False,
) -> None:
    """For each pair p: ``d_in[p] = W[p] @ dT[p].T`` (before the update; skipped when None),
    ``g = hin[p] @ dT[p]``, then one Adam step on ``W[p], m[p], v[p]`` with g. Shapes: W, m, v
    (P, cin, N); dT (P, HW, N); hin and d_in (P, cin, HW); work (4 * N,). With
    ``shared`` (cin, N), Adam's first step: W[p] starts from it and the moments from zero.
    ``last``: the search's last step (m and v, never read again, are left as they were).
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
        _ptr(d_in), _ptr(work), lr, betas[0], betas[1], eps, float(step), int(last),
    )  # fmt: skip


def conv_backward_adam_mixed(
    lib: ctypes.CDLL,
    D: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    dT: torch.Tensor,
    hin: torch.Tensor,
    d_in: torch.Tensor | None,
    work: torch.Tensor,
    shared: torch.Tensor,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    step: int,
    scale: float,
    first: bool,
    last: bool,
) -> None:
    """``conv_backward_adam`` for precision "mixed" (float32 library only): each pair's
    weights are ``shared + scale * D[p]``, with D, m, v (P, cin, N) in bfloat16, updated in
    place. ``first``: Adam's first step (D and the moments start at zero and are not read);
    ``last``: the search's last step (the moments, never read again, are not written)."""
    P, cin, N = D.shape
    HW = dT.shape[1]
    if _lib_dtype(lib) != torch.float32:
        raise ValueError("lib: the mixed kernel needs the float32 library")
    if N % vector_width(lib):
        raise ValueError(f"N={N} must be a multiple of {vector_width(lib)}")
    if step < 1:
        raise ValueError(f"step: Adam's steps count from 1, got {step}")
    if not scale > 0:
        raise ValueError(f"scale: must be positive, got {scale}")
    bf = torch.bfloat16
    if not _check(lib, (P, cin, N, HW), D=(D, (P, cin, N), bf), m=(m, (P, cin, N), bf),
                  v=(v, (P, cin, N), bf), dT=(dT, (P, HW, N)), hin=(hin, (P, cin, HW)),
                  d_in=(d_in, (P, cin, HW)), shared=(shared, (cin, N)),
                  work=(work, (4 * N,))):  # fmt: skip
        return
    if shared is None:
        raise ValueError("shared: the mixed kernel needs the shared weights")
    lib.adgan_conv_backward_adam_mixed(
        P, cin, N, HW, _ptr(D), _ptr(shared), _ptr(m), _ptr(v), _ptr(dT), _ptr(hin),
        _ptr(d_in), _ptr(work), lr, betas[0], betas[1], eps, float(step), scale, int(first),
        int(last),
    )  # fmt: skip


def forward_mixed(
    lib: ctypes.CDLL, h: torch.Tensor, shared: torch.Tensor, D: torch.Tensor, scale: float,
    out: torch.Tensor,
) -> None:  # fmt: skip
    """``out[p] = h[p].T @ (shared + scale * D[p])`` for each pair p: h (P, cin, HW), shared
    (cin, N) float32, D (P, cin, N) bfloat16, out (P, HW, N)."""
    P, cin, HW = h.shape
    N = D.shape[2]
    if _lib_dtype(lib) != torch.float32:
        raise ValueError("lib: the mixed kernel needs the float32 library")
    if N % vector_width(lib):
        raise ValueError(f"N={N} must be a multiple of {vector_width(lib)}")
    if not _check(lib, (P, cin, N, HW), h=(h, (P, cin, HW)), shared=(shared, (cin, N)),
                  D=(D, (P, cin, N), torch.bfloat16), out=(out, (P, HW, N))):  # fmt: skip
        return
    lib.adgan_forward_mixed(P, cin, N, HW, _ptr(h), _ptr(shared), _ptr(D), scale, _ptr(out))


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
