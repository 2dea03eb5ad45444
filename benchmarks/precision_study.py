"""The search's precision and detection: holdout ROC-AUC with precision="exact" and "mixed".

Reads the training split only, as ``holdout_study.py`` does: for each normal class, the GAN
the benchmark trained (``BENCH/work/gan-<dataset>-c<class>-s<seed>/checkpoint.pt``), and
the 100 normal training images held out of its training against ``--anomalies`` training
images of the other classes. Both precisions search the same images from the same seeds
(the ``cpu`` preset's search: 64 seeds, 5 steps, bn_stats="seeds"); prints per class the
ROC-AUC of each (anomalous = positive), their difference, the largest relative difference
of a score, and each search's seconds.

    python benchmarks/precision_study.py --dataset mnist --classes 0,2,8 \
        --bench docs/bench/mnist-cpu --data-root DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from holdout_study import groups
from sklearn.metrics import roc_auc_score

from adgan.search import SearchConfig, latent_search
from adgan.training import load_gan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, choices=["mnist", "cifar10", "digits"])
    ap.add_argument("--classes", required=True, help="comma-separated normal classes")
    ap.add_argument("--bench", required=True, help="the benchmark folder holding work/gan-*")
    ap.add_argument("--data-root", default=os.environ.get("ADGAN_DATA"))
    ap.add_argument("--anomalies", type=int, default=300)
    ap.add_argument("--calibration", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from adgan.data import load_dataset

    train, _ = load_dataset(args.dataset, args.data_root)  # the test split is never read
    for c in (int(x) for x in args.classes.split(",")):
        ck = Path(args.bench) / "work" / f"gan-{args.dataset}-c{c}-s{args.seed}" / "checkpoint.pt"
        gen, _, _ = load_gan(ck)
        _, xn, xa, _ = groups(train, c, args.anomalies, 1, args.calibration, args.seed)
        x = torch.from_numpy(np.concatenate([xn, xa]))
        y = np.r_[np.zeros(len(xn)), np.ones(len(xa))]
        z0 = torch.randn(64, gen.config.latent_dim, generator=torch.Generator().manual_seed(7919))
        scores, aucs = {}, {}
        for prec in ("exact", "mixed"):
            t0 = time.perf_counter()
            cfg = SearchConfig(bn_stats="seeds", precision=prec)
            scores[prec] = latent_search(gen, x, z0, cfg, keep_z=False).loss
            aucs[prec] = roc_auc_score(y, scores[prec])
            print(f"class {c} {prec}: auc={aucs[prec]:.4f} seconds={time.perf_counter() - t0:.0f}",
                  flush=True)  # fmt: skip
        rel = np.abs(scores["mixed"] / scores["exact"] - 1).max()
        print(f"class={c} auc_exact={aucs['exact']:.4f} auc_mixed={aucs['mixed']:.4f} "
              f"difference={aucs['mixed'] - aucs['exact']:+.4f} max_rel_score_diff={rel:.2e}",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
