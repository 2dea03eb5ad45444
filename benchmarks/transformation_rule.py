"""How adgan-plus should sum its rotation network's losses: as they are, or each
transformation's loss standardised on normal images first (``standardise_transformations``).

Reads the score files of ``benchmarks/holdout_study.py`` (training split only: held-out
normal images of the class against other classes' training images), run with a
``rotation+shift`` variant (which keeps every transformation's loss) and a search
(``recon-ema0.999``), and judges each rule by two-fold cross-validation over the held-out
normal images: the statistics come from one half, the ROC-AUC from the other half against
every anomaly, then the halves swap; the two AUCs are averaged. No image both sets the
statistics and is judged, and no test image is read.

    python benchmarks/transformation_rule.py --scores holdout/mnist --dataset mnist \
        --classes 0,1,2,3,8

Prints, per class, how hard each rotation is for the normal and the anomalous images (the
rotation head's mean cross-entropy, over the nine shifts), then one line per rule, and the
mean over the classes: the rotation part alone and (with ``--search``) summed with the
standardised log search loss, as adgan-plus does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score


def zscore(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (v - ref.mean(0)) / np.maximum(ref.std(0), 1e-6)


def rules(per: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """The rotation part by each rule, its statistics from the rows ``ref`` of ``per``."""
    log = np.log(per + 1e-6)
    return {
        "sum": per.sum(1),
        "standardised": zscore(per, per[ref]).sum(1),
        "standardised-log": zscore(log, log[ref]).sum(1),
    }


def two_fold(scores: dict[str, np.ndarray], n_trained: int, n_normal: int, search: str | None):
    """rule -> (AUC of the part alone, AUC summed with the search), each the mean of the two
    folds over the held-out normal images."""
    per = scores["rotation+shift:per"]
    n = len(per)
    normal = np.arange(n_trained, n_trained + n_normal)
    anomalous = np.arange(n_trained + n_normal, n)
    halves = normal[: n_normal // 2], normal[n_normal // 2 :]
    out: dict[str, list[list[float]]] = {}
    for ref, judged in (halves, halves[::-1]):
        rows = np.r_[judged, anomalous]
        y = np.r_[np.zeros(len(judged)), np.ones(len(anomalous))]
        for rule, part in rules(per, ref).items():
            aucs = [roc_auc_score(y, part[rows])]
            if search:
                rec = np.log(np.maximum(scores[search], 1e-12))
                total = zscore(rec, rec[ref]) + zscore(part, part[ref])
                aucs.append(roc_auc_score(y, total[rows]))
            out.setdefault(rule, []).append(aucs)
    return {rule: np.mean(v, axis=0) for rule, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scores", required=True, help="holdout_study.py's --out folder")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--classes", required=True, help="comma-separated normal classes")
    ap.add_argument("--trained", type=int, default=100, help="as given to holdout_study.py")
    ap.add_argument("--calibration", type=int, default=100, help="as given to holdout_study.py")
    ap.add_argument("--search", default="recon-ema0.999", help="the search variant; '' for none")
    args = ap.parse_args(argv)
    table: dict[str, list[np.ndarray]] = {}
    for c in (int(x) for x in args.classes.split(",")):
        path = Path(args.scores) / f"scores-{args.dataset}-c{c}.npz"
        if not path.exists():
            ap.error(f"--scores: {path} not found (run holdout_study.py for class {c} first)")
        scores = dict(np.load(path))
        if "rotation+shift:per" not in scores:
            ap.error(f"{path}: no per-transformation losses (run holdout_study.py again with "
                     "the rotation+shift variant)")  # fmt: skip
        search = args.search or None
        if search and search not in scores:
            ap.error(f"{path}: no {search} scores (run it, or give --search '')")
        per = scores["rotation+shift:per"].reshape(-1, 9, 4, 3)  # shift, rotation, head
        nt, nn = args.trained, args.calibration
        for name, rows in (("normal", per[nt : nt + nn]), ("anomalous", per[nt + nn :])):
            rot = " ".join(f"{v:.2f}" for v in rows[..., 0].mean((0, 1)))
            shifts = " ".join(f"{v:.2f}" for v in rows[..., 1:].mean((0, 1, 2)))
            print(
                f"{args.dataset} class {c} {name} images: mean cross-entropy of the rotation "
                f"head by rotation (0, 90, 180, 270) {rot}; of the shift heads (x, y) {shifts}"
            )
        for rule, aucs in two_fold(scores, args.trained, args.calibration, search).items():
            table.setdefault(rule, []).append(aucs)
            both = f" with the search {aucs[1]:.4f}" if search else ""
            print(f"{args.dataset} class {c} {rule}: alone {aucs[0]:.4f}{both}")
    for rule, rows in table.items():
        m = np.mean(rows, axis=0)
        both = f" with the search {m[1]:.4f}" if len(m) > 1 else ""
        print(f"mean over {len(rows)} classes, {rule}: alone {m[0]:.4f}{both}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
