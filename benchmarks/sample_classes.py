"""What a trained GAN's samples look like, by class: does the generator of one normal class
also draw the other classes?

A classifier fitted on the training split of all ten classes (5 nearest neighbours on 50
PCA components; the test split is never read) labels ``--n`` samples of the benchmark's trained
generator and of its moving averages (``adgan.training.EMA_DECAYS``). A generator that covers
its class and nothing else has all its samples labelled as the normal class; samples labelled
as another class are shapes of that class the search can reconstruct, so anomalies of that class
score low. Prints one row per (class, generator) and appends it to ``--csv``:

    python benchmarks/sample_classes.py --dataset mnist --classes 8,2 --bench docs/bench/mnist-cpu

Columns: the fraction labelled as the normal class, the classifier's mean probability of the
normal class, and the three other classes drawn most often with their fractions. The
classifier's own accuracy on held-out training images is printed first, and the row "real"
labels the normal class's own held-out training images: its errors bound what the fractions
can say.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from adgan.base import as_images
from adgan.data import load_dataset
from adgan.training import ema_generators, load_gan


def classifier(train, seed: int, n_fit: int = 20000):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train.images))
    X = as_images(train.images).reshape(len(train.images), -1)  # [-1, 1], as generated
    fit, held = idx[:n_fit], idx[n_fit : n_fit + 5000]
    clf = make_pipeline(PCA(50, random_state=seed), KNeighborsClassifier(5))
    clf.fit(X[fit], train.labels[fit])
    acc = float((clf.predict(X[held]) == train.labels[held]).mean())
    return clf, acc, held


@torch.no_grad()
def samples(gen, n: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, gen.config.latent_dim, generator=g)
    x = gen(z)  # tanh: [-1, 1], the range as_images gives the training images
    return x.reshape(n, -1).numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, choices=["mnist", "cifar10"])
    ap.add_argument("--classes", required=True, help="comma-separated normal classes")
    ap.add_argument("--bench", required=True, help="the benchmark folder holding work/gan-*")
    ap.add_argument("--data-root", default=os.environ.get("ADGAN_DATA"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None, help="append the rows to this CSV file")
    args = ap.parse_args(argv)
    train, _ = load_dataset(args.dataset, args.data_root)  # the test split is never read
    clf, acc, held = classifier(train, args.seed)
    X_all = as_images(train.images).reshape(len(train.images), -1)
    print(f"classifier accuracy on 5000 held-out training images: {acc:.3f}")
    rows = []
    for c in (int(x) for x in args.classes.split(",")):
        ck = Path(args.bench) / "work" / f"gan-{args.dataset}-c{c}-s{args.seed}" / "checkpoint.pt"
        gen, _, blob = load_gan(ck)
        gens = {"real": None, "trained": gen}
        gens.update({f"ema{d}": g.eval() for d, g in ema_generators(blob, args.seed).items()})
        for name, g in gens.items():
            # "real": the class's own training images the classifier did not fit on
            x = (
                X_all[held[train.labels[held] == c]]
                if g is None
                else samples(g, args.n, args.seed + 1)
            )
            proba = clf.predict_proba(x)
            pred = clf.classes_[proba.argmax(1)]
            frac = np.bincount(pred, minlength=10) / len(pred)
            others = [k for k in np.argsort(-frac) if k != c][:3]
            row = {
                "dataset": args.dataset,
                "normal_class": c,
                "generator": name,
                "labelled_normal": round(float(frac[c]), 4),
                "mean_p_normal": round(float(proba[:, list(clf.classes_).index(c)].mean()), 4),
                "most_drawn_others": " ".join(f"{k}:{frac[k]:.3f}" for k in others),
            }
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    if args.csv:
        path = Path(args.csv)
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new:
                w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
