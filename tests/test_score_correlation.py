"""benchmarks/score_correlation.py on a benchmark folder of tiny score files."""

import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "score_correlation.py"


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
