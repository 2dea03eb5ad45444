"""Scoring time per image: PyOD's AnoGAN beside this project's AnoGAN and ADGAN.

PyOD (``pip install pyod``; its AnoGAN also needs pandas) searches the latent space one
sample at a time, in a Python loop, inside ``fit``: its ``decision_function`` on new data
does no search at all (it reuses the query network left by the last training sample). So its
per-image search cost is measured here as the difference between two ``fit`` runs that differ
only in ``epochs_query`` (Q and 1 steps per sample), divided by the samples and scaled to Q
steps. Ours: ``AnoGAN.anomaly_score`` with the same number of latent steps, and ADGAN at the
paper's search settings, both on scikit-learn's digits (8x8) with the smoke preset's GAN
size. The networks differ (PyOD: a small MLP; ours: the DCGAN), which favours PyOD.

    python benchmarks/peer_pyod.py --steps 500 --images 64
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def pyod_seconds_per_image(X: np.ndarray, steps: int) -> float:
    from pyod.models.anogan import AnoGAN as PyodAnoGAN

    def fit(q):
        det = PyodAnoGAN(epochs=1, epochs_query=q, device="cpu", verbose=0)
        t = time.perf_counter()
        det.fit(X)
        return time.perf_counter() - t

    fit(1)  # warm-up
    t1, tq = fit(1), fit(steps)
    return (tq - t1) / len(X) * steps / (steps - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500, help="latent steps (AnoGAN's Gamma)")
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()
    from adgan import ADGAN
    from adgan.data import load_digits
    from adgan.detectors.anogan import AnoGAN

    train, test = load_digits()
    x_train = train.images[train.labels == 0]
    x_test = test.images[: args.images]
    print(
        f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch "
        f"{torch.__version__}; digits 8x8; {args.images} test images; {args.steps} latent steps"
    )
    rows = []
    try:
        import pyod

        flat = x_test.reshape(len(x_test), -1).astype(np.float32) / 127.5 - 1
        rows.append((f"PyOD {pyod.__version__} AnoGAN (MLP, one sample at a time)",
                     pyod_seconds_per_image(flat, args.steps)))  # fmt: skip
    except ImportError as exc:
        print(f"PyOD not measured: {exc}")
    gan = dict(objective="wgan-gp", iterations=50, width=64, latent_dim=32, device="cpu")
    ano = AnoGAN(**gan, anogan_steps=args.steps).fit(x_train)
    t = time.perf_counter()
    ano.anomaly_score(x_test)
    rows.append(
        ("adgan AnoGAN (DCGAN, all images at once)", (time.perf_counter() - t) / len(x_test))
    )
    ad = ADGAN(**gan, n_seeds=64, steps=5).fit(x_train)
    t = time.perf_counter()
    ad.anomaly_score(x_test)
    rows.append(("adgan ADGAN (64 seeds x 5 steps)", (time.perf_counter() - t) / len(x_test)))
    print(f"{'method':>56} {'ms/image':>9} {'images/s':>9}")
    for name, spi in rows:
        print(f"{name:>56} {spi * 1e3:>9.2f} {1 / spi:>9.1f}")
    if len(rows) == 3:
        print(f"ours_anogan_speedup={rows[0][1] / rows[1][1]:.1f}")


if __name__ == "__main__":
    main()
