"""Training-split holdout for the baselines: does a method's score follow its normal class, or
how hard any image is?

Everything here reads the training split only. A fixed pool of ``--per-class`` training images
of every class is held out of all fits. For each normal class, each method is fitted (with the
preset's parameters for the dataset) on that class's other training images and scores the
whole pool. It prints, and writes to ``OUT/holdout.csv``:

- the holdout ROC-AUC of each (class, method): the pool's images of the normal class against
  the pool's other images (anomalous = positive);
- for each method, the rank correlation (Spearman) between the pool scores of its models of
  different normal classes: near 1, the models rank the same images as anomalous whatever
  class they were trained on;
- the rank correlation of each model's scores with the pool images' total variation (mean
  absolute difference between neighbouring pixels): how much of the score is image detail.

    python benchmarks/baseline_holdout.py --dataset cifar10 --classes 0,1,2 \
        --methods dcae,vae,mean-image --out holdout/baselines-cifar10

Scores are kept per (class, method) in ``OUT/scores-<dataset>-c<class>-<method>.npz``; a rerun
reuses them (it resumes). Methods that choose a setting on a labelled holdout (kde, ocsvm,
iforest, gmm, anogan) and those that train a GAN are not taken: this study has no labels to
give them apart from the pool it judges on.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from adgan.data import load_dataset
from adgan.evaluate import parse_classes, parse_methods
from adgan.files import atomic_write, write_csv
from adgan.presets import load_preset
from adgan.registry import GAN_DETECTORS, make_detector


def pool_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` training indices of every class, drawn with ``seed``, sorted by class."""
    rng = np.random.default_rng(seed)
    out = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        if len(idx) <= per_class:
            raise SystemExit(f"--per-class: class {k} has only {len(idx)} training images")
        out.append(np.sort(rng.choice(idx, per_class, replace=False)))
    return np.concatenate(out)


def total_variation(images: np.ndarray) -> np.ndarray:
    """Mean absolute difference between horizontally and vertically neighbouring pixels, per
    image (any number of channels)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1, *images.shape[-2:])
    dh = np.abs(np.diff(x, axis=-1)).mean(axis=(1, 2, 3))
    dv = np.abs(np.diff(x, axis=-2)).mean(axis=(1, 2, 3))
    return (dh + dv) / 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--classes", default="0,1,2")
    ap.add_argument("--methods", default="dcae,vae,mean-image")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--per-class", type=int, default=100, help="pool images per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=os.environ.get("ADGAN_DATA"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    methods = parse_methods(args.methods)
    bad = [m for m in methods if m in GAN_DETECTORS]
    preset = load_preset(args.preset).for_dataset(args.dataset)
    for m in methods:
        det = make_detector(m, **preset.params_for(m))
        if det.selects_on_labels:
            bad.append(m)
    if bad:
        ap.error(f"--methods: {', '.join(bad)} train a GAN or choose a setting on labels; "
                 "this study takes the others (dcae, vae, mean-image, ...)")  # fmt: skip
    if args.dataset != "digits" and not args.data_root:
        ap.error(f"--data-root (or ADGAN_DATA): the folder that holds {args.dataset}")
    train, _ = load_dataset(args.dataset, args.data_root)
    classes = parse_classes(args.classes, n_classes=len(np.unique(train.labels)), option="classes")
    pool = pool_indices(train.labels, args.per_class, args.seed)
    in_pool = np.zeros(len(train.labels), bool)
    in_pool[pool] = True
    x_pool, y_pool = train.images[pool], train.labels[pool]
    tv = total_variation(x_pool)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    scores: dict[tuple[int, str], np.ndarray] = {}
    rows = []
    for c in classes:
        x_fit = train.images[(train.labels == c) & ~in_pool]
        for m in methods:
            path = out / f"scores-{args.dataset}-c{c}-{m}.npz"
            t0 = time.perf_counter()
            if path.exists():
                s = np.load(path)["score"]
            else:
                det = make_detector(m, **preset.params_for(m), random_state=args.seed)
                det.fit(x_fit)
                s = det.anomaly_score(x_pool)
                atomic_write(path, lambda fh, s=s: np.savez(fh, score=s, index=pool))
            scores[c, m] = s
            auc = roc_auc_score(y_pool != c, s)
            rho_tv = spearmanr(s, tv).statistic
            rows.append({"dataset": args.dataset, "normal_class": c, "method": m,
                         "holdout_auc": round(float(auc), 4),
                         "spearman_total_variation": round(float(rho_tv), 3),
                         "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
            print(f"class {c} {m}: holdout AUC {auc:.4f}, Spearman with total variation "
                  f"{rho_tv:.3f}", flush=True)  # fmt: skip
    fields = list(rows[0])
    write_csv(out / "holdout.csv", fields, [[r[f] for f in fields] for r in rows])

    print("\nSpearman between the pool scores of models of different normal classes:")
    pairs = list(itertools.combinations(classes, 2))
    w = csv.writer(sys.stdout, delimiter="\t")
    w.writerow(["method", *[f"{a}-{b}" for a, b in pairs]])
    for m in methods:
        w.writerow([m, *[f"{spearmanr(scores[a, m], scores[b, m]).statistic:.3f}"
                         for a, b in pairs]])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
