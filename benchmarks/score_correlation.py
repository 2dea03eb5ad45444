"""How much a method's score depends on the normal class: the rank correlation (Spearman) of
its test scores from models of different normal classes, read from a benchmark folder.

Every normal class of a benchmark draws the same test items (the draw is seeded by the
benchmark's seed alone), so two classes' scores of one method can be set side by side item by
item. A correlation near 1 says the score orders images alike whatever the class the model
was trained on: it measures a property of the image, not its likeness to the normal class.

    python benchmarks/score_correlation.py --bench docs/bench/cifar10-cpu --methods adgan,adgan-plus
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from adgan.benchmark.runner import scores_path


def load(bench: Path, dataset: str, c: int, method: str, run: int):
    f = scores_path(bench, dataset, c, method, run)
    if not f.exists():
        return None
    with np.load(f) as z:
        return dict(zip(z["index"].tolist(), z["score"].tolist(), strict=True))


def correlation(a: dict, b: dict) -> tuple[float, int]:
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return float("nan"), len(common)
    return float(spearmanr([a[i] for i in common], [b[i] for i in common]).correlation), len(common)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="a benchmark's output folder")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--methods", default="adgan")
    ap.add_argument("--against", default="mean-image",
                    help="a method to correlate with each one on the same class")  # fmt: skip
    ap.add_argument("--run", type=int, default=0)
    args = ap.parse_args()
    bench = Path(args.bench)
    for method in args.methods.split(","):
        scores = {c: s for c in range(10) if (s := load(bench, args.dataset, c, method, args.run))}
        print(f"{method}: classes with scores {sorted(scores)}")
        for a, b in itertools.combinations(sorted(scores), 2):
            r, n = correlation(scores[a], scores[b])
            print(f"  classes {a}, {b}: Spearman {r:.3f} over {n} common test items")
        for c in sorted(scores) if args.against != method else []:
            other = load(bench, args.dataset, c, args.against, args.run)
            if other is not None:
                r, n = correlation(scores[c], other)
                print(f"  class {c} against {args.against}: Spearman {r:.3f} ({n} items)")


if __name__ == "__main__":
    main()
