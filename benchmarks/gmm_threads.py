"""The GMM baseline's fit with one BLAS thread against the default thread count.

Fits scikit-learn's GaussianMixture (full covariances, as the GMM baseline does) on PCA
features of one MNIST class, once with one BLAS thread and once with the library's
default, and prints the seconds of each and their ratio. ``--busy`` runs a second process
of matrix products beside it, as another job sharing the cores would.

    ADGAN_DATA=DIR python benchmarks/gmm_threads.py          # MNIST class 3
    python benchmarks/gmm_threads.py                          # digits, without ADGAN_DATA
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

from adgan.data import load_dataset


def _busy(stop):  # pragma: no cover - a load generator in a child process
    a = np.random.default_rng(0).normal(size=(400, 400))
    while not stop.is_set():
        a = np.tanh(a @ a.T / 400)


def _fit(Z, k, threads):
    t = time.perf_counter()
    with threadpool_limits(limits=threads, user_api="blas"):
        g = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=0).fit(Z)
        bic = g.bic(Z)
    return time.perf_counter() - t, g.n_iter_, bic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--components", default="5,10,20", help="counts to fit (default 5,10,20)")
    ap.add_argument("--dim", type=int, default=100, help="PCA dimension (default 100)")
    ap.add_argument("--busy", action="store_true", help="a second process shares the cores")
    args = ap.parse_args()
    root = os.environ.get("ADGAN_DATA")
    name, cls = ("mnist", 3) if root else ("digits", 3)
    train, _ = load_dataset(name, root)
    X = train.images[train.labels == cls]
    X = X.reshape(len(X), -1).astype(np.float64)
    dim = min(args.dim, X.shape[1], len(X) - 1)
    pca = PCA(dim, random_state=0).fit(X)
    Z = pca.transform(X) / np.sqrt(pca.explained_variance_.mean())
    default = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    print(f"{platform.machine()} {os.cpu_count()} cpus; {name} class {cls}: {Z.shape}")
    print(f"BLAS default threads {default}; busy neighbour: {args.busy}")
    stop = mp.Event()
    proc = None
    if args.busy:
        proc = mp.Process(target=_busy, args=(stop,), daemon=True)
        proc.start()
    try:
        print("components  iters  1 thread s  default s  ratio  same BIC")
        for k in (int(c) for c in args.components.split(",")):
            t1, n1, b1 = _fit(Z, k, 1)
            td, nd, bd = _fit(Z, k, default)
            same = np.isclose(b1, bd, rtol=1e-9)
            print(f"{k:10d}  {n1:5d}  {t1:10.2f}  {td:9.2f}  {td / t1:5.2f}  {same}")
    finally:
        stop.set()
        if proc is not None:
            proc.join()


if __name__ == "__main__":
    main()
