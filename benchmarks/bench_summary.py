"""Per method, from a benchmark folder's results.csv: the classes it has rows for, its mean
ROC-AUC over them beside the paper's mean over the same classes, and its mean fit and score
seconds per class (as recorded, with the machine and thread count the rows name).

    python benchmarks/bench_summary.py --bench docs/bench/cifar10-cpu
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from adgan.benchmark.runner import read_results
from adgan.benchmark.tables import paper_mean
from adgan.registry import DETECTORS


def summary(rows: list[dict], dataset: str) -> list[dict]:
    out = []
    seen = {r["method"] for r in rows if r["dataset"] == dataset}
    for m in [m for m in DETECTORS if m in seen] + sorted(seen - set(DETECTORS)):
        mine = [r for r in rows if r["dataset"] == dataset and r["method"] == m]
        classes = sorted({r["normal_class"] for r in mine})
        per_class = [np.mean([r["auc"] for r in mine if r["normal_class"] == c]) for c in classes]
        paper = paper_mean(dataset, m, classes)  # Section 4.3's means: all ten classes only
        out.append({
            "method": m,
            "classes": classes,
            "ours": float(np.mean(per_class)),
            "paper": paper,
            "fit_s": float(np.mean([float(r["fit_seconds"]) for r in mine])),
            "score_s": float(np.mean([float(r["score_seconds"]) for r in mine])),
            "machines": sorted({r.get("machine", "") for r in mine}),
        })  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="a benchmark's output folder")
    ap.add_argument("--dataset", default=None, help="default: the folder's only dataset")
    args = ap.parse_args()
    rows = read_results(Path(args.bench) / "results.csv")
    datasets = sorted({r["dataset"] for r in rows})
    dataset = args.dataset or (datasets[0] if len(datasets) == 1 else None)
    if dataset is None:
        raise SystemExit(f"--dataset: the folder holds {', '.join(datasets) or 'no rows'}")
    print("| method | classes | our mean | paper mean, same classes | fit s per class | "
          "score s per class | machine |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in summary(rows, dataset):
        paper = f"{s['paper']:.3f}" if s["paper"] is not None else "–"
        classes = ",".join(str(c) for c in s["classes"])
        print(f"| {s['method']} | {classes} | {s['ours']:.3f} | {paper} | {s['fit_s']:.0f} | "
              f"{s['score_s']:.1f} | {'; '.join(s['machines'])} |")  # fmt: skip


if __name__ == "__main__":
    main()
