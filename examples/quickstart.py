"""Quick start: ADGAN beside the distance-to-mean-image floor on scikit-learn's embedded 8x8
digits (nothing to download).

One digit class is normal; ADGAN's GAN learns it from that class's training images, and
every image of the fixed test split is scored (higher = more anomalous). ROC-AUC measures how
well the scores put the other nine classes above the normal one. The defaults are the
``smoke`` preset's settings: on two CPU cores its fit of class 1 took 26 s and the scoring
of the 599 test images 9 s (docs/results.md, "Digits ... every class").

    python examples/quickstart.py                     # class 1, the smoke preset's settings
    python examples/quickstart.py --normal-class 9 --figure gallery.png

In a notebook, run the body of ``main`` cell by cell: ``plot_gallery`` returns a matplotlib
Figure, which the notebook shows.
"""

import argparse

from sklearn.metrics import roc_auc_score

from adgan import ADGAN, MeanImage
from adgan.benchmark.figures import plot_gallery
from adgan.data import load_digits, one_vs_all


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--normal-class", type=int, default=1, help="the normal digit (default: 1)")
    ap.add_argument(
        "--iterations", type=int, default=800, help="GAN generator iterations (default: 800)"
    )
    ap.add_argument("--n-seeds", type=int, default=64, help="search seeds per image (default: 64)")
    ap.add_argument("--n-test", type=int, default=None, help="test images drawn (default: all 599)")
    ap.add_argument("--figure", default=None, help="write the gallery of Figures 4-6 here (PNG)")
    args = ap.parse_args(argv)

    train, test = load_digits()  # uint8 images (N, 1, 8, 8) with labels 0-9
    task = one_vs_all(train, test, normal_class=args.normal_class, n_test=args.n_test, seed=0)
    print(
        f"normal digit {args.normal_class}: {len(task.x_train)} training images; "
        f"{len(task.x_test)} test images, {int(task.y_test.sum())} of them anomalous"
    )

    adgan = ADGAN(
        objective="wgan-gp",  # the smoke preset: WGAN-GP, a small DCGAN for 8x8 images
        iterations=args.iterations,
        width=64,
        latent_dim=32,
        n_seeds=args.n_seeds,  # the paper's search: 64 seeds, 5 steps
        steps=5,
        calibration=0.1,  # 10% of the normal images held out to set the threshold
        verbose=True,  # progress bars
    ).fit(task.x_train)
    floor = MeanImage(calibration=0.1).fit(task.x_train)

    scores = {}
    for name, det in (("ADGAN", adgan), ("mean-image", floor)):
        scores[name] = det.anomaly_score(task.x_test)  # higher = more anomalous
        # the threshold: anomaly scores above it are flagged (predict gives -1); it was put
        # at the 95th percentile (contamination 0.05) of the held-out normal images' scores
        flagged = scores[name] > -det.offset_
        anomalous = task.y_test == 1
        print(
            f"{name:<10} ROC-AUC {roc_auc_score(task.y_test, scores[name]):.4f}; flagged "
            f"{int(flagged[anomalous].sum())} of {int(anomalous.sum())} anomalies and "
            f"{int(flagged[~anomalous].sum())} of {int((~anomalous).sum())} normal images"
        )

    fig = plot_gallery(task.x_test, scores["ADGAN"], path=args.figure)
    if args.figure:
        print(f"most (top) and least (bottom) anomalous test images by ADGAN: {args.figure}")
    return fig


if __name__ == "__main__":
    main()
