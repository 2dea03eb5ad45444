"""The scripts that read a benchmark folder (benchmarks/score_correlation.py,
benchmarks/bench_summary.py), on tiny files in the benchmark's formats."""

import subprocess
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "score_correlation.py"


def test_scores_that_order_items_alike_correlate(tmp_path):
    (tmp_path / "scores").mkdir()
    rng = np.random.default_rng(0)
    index = rng.permutation(50)
    base = rng.normal(size=50)
    files = {
        0: (index, base),  # class 0
        1: (index[::-1], base[::-1] * 3 + 1),  # the same order, items listed otherwise
        2: (index, -base),  # the reverse order
    }
    for c, (idx, s) in files.items():
        np.savez(tmp_path / "scores" / f"cifar10-c{c}-adgan-r0.npz", y=np.zeros(50), score=s,
                 index=idx)  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--bench", str(tmp_path), "--methods", "adgan"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "classes 0, 1: Spearman 1.000 over 50 common test items" in out
    assert "classes 0, 2: Spearman -1.000" in out


def test_summary_sets_each_method_beside_the_papers_mean_on_its_classes(tmp_path):
    import csv

    from adgan.benchmark.runner import FIELDS

    rows = [("adgan", 0, 0.7, 100.0), ("adgan", 1, 0.5, 300.0), ("kde", 0, 0.6, 10.0)]
    with (tmp_path / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for m, c, auc, fit in rows:
            w.writerow({"dataset": "cifar10", "normal_class": c, "method": m, "run": 0,
                        "seed": 0, "auc": auc, "fit_seconds": fit, "score_seconds": 2,
                        "machine": "x86_64, 1 threads"})  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_summary.py"), "--bench", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # Table 1, CIFAR-10: adgan 0.661 and 0.435 on classes 0 and 1, kde 0.705 on class 0
    assert "| adgan | 0,1 | 0.600 | 0.548 | 200 | 2.0 | x86_64, 1 threads |" in out
    assert "| kde | 0 | 0.600 | 0.705 | 10 |" in out
