"""Per method, from a benchmark folder's results.csv: the classes it has rows for, its mean
ROC-AUC over them beside the paper's mean over the same classes, and its mean fit and score
seconds per class (as recorded, with the machine and thread count the rows name). Where a
method has several runs, its mean is the mean over runs, then ± the standard deviation of the
runs' means over the classes (of the runs that cover every class listed).

    python benchmarks/bench_summary.py --bench docs/bench/cifar10-cpu

With ``--bootstrap B`` a column gives how much each mean owes to the draw of test items: the
standard deviation of the mean over B resamples of the test items (with replacement, the same
resample for every class and run, as every class of a benchmark scores the same items), from
the per-item scores the benchmark keeps in ``scores/``.

With ``--versus METHOD`` it then prints, per class, METHOD's ROC-AUC beside the best of the
baselines named by ``--baselines`` (default: KDE, OC-SVM, IF, GMM, DCAE, VAE and AnoGAN),
and on how many classes METHOD is best or tied (within ``--tie``, default 0: equal to the
rounding of the printed three decimals is not a tie).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from adgan.benchmark.runner import read_results, scores_path
from adgan.benchmark.tables import paper_mean, run_means
from adgan.registry import DETECTORS


def summary(rows: list[dict], dataset: str) -> list[dict]:
    out = []
    seen = {r["method"] for r in rows if r["dataset"] == dataset}
    for m in [m for m in DETECTORS if m in seen] + sorted(seen - set(DETECTORS)):
        mine = [r for r in rows if r["dataset"] == dataset and r["method"] == m]
        classes = sorted({r["normal_class"] for r in mine})
        per_class = [np.mean([r["auc"] for r in mine if r["normal_class"] == c]) for c in classes]
        paper = paper_mean(dataset, m, classes)  # Section 4.3's means: all ten classes only
        per_run = run_means(rows, dataset, m, classes)
        out.append({
            "method": m,
            "classes": classes,
            "ours": float(np.mean(per_class)),
            "runs": len({r["run"] for r in mine}),
            "sd": float(np.std(per_run, ddof=1)) if len(per_run) > 1 else None,
            "paper": paper,
            "fit_s": float(np.mean([float(r["fit_seconds"]) for r in mine])),
            "score_s": float(np.mean([float(r["score_seconds"]) for r in mine])),
            "machines": sorted({r.get("machine", "") for r in mine}),
        })  # fmt: skip
    return out


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC, anomalous (y = 1) positive, ties counted half: sklearn's roc_auc_score by
    ranks, which the bootstrap calls thousands of times (on 1000 items 0.10 against 2.4 ms)."""
    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def draw_sd(bench: Path, dataset: str, method: str, rows: list[dict], B: int, seed: int = 0):
    """Standard deviation of ``method``'s mean ROC-AUC (mean over runs, then over classes)
    over B resamples of the test items; None where a row's scores file is missing."""
    keys = sorted({(r["normal_class"], r["run"]) for r in rows
                   if r["dataset"] == dataset and r["method"] == method})  # fmt: skip
    files = {}
    for c, run in keys:
        path = scores_path(bench, dataset, c, method, run)
        if not path.is_file():
            return None
        with np.load(path) as d:
            items = zip(d["index"], d["y"], d["score"], strict=True)
            files[c, run] = {int(i): (float(y), float(s)) for i, y, s in items}
    common = sorted(set.intersection(*(set(f) for f in files.values())))
    if not common:
        return None
    by_class: dict[int, list[np.ndarray]] = {}  # class -> its runs' (y, score), (2, n) each
    for (c, _), f in files.items():
        by_class.setdefault(c, []).append(np.array([f[i] for i in common]).T)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(B):
        s = rng.integers(0, len(common), len(common))
        means.append(np.mean([np.mean([auc(y[s], score[s]) for y, score in runs])
                              for runs in by_class.values()]))  # fmt: skip
    return float(np.nanstd(means, ddof=1))


BASELINES = "kde,ocsvm,iforest,gmm,dcae,vae,anogan"


def versus(rows: list[dict], dataset: str, method: str, baselines: list[str], tie: float):
    """Per class holding a row of ``method``: (class, its AUC, best baseline, its AUC,
    best or tied), the mean over runs where a class has several."""
    auc: dict[tuple[int, str], list[float]] = {}
    for r in rows:
        if r["dataset"] == dataset:
            auc.setdefault((r["normal_class"], r["method"]), []).append(r["auc"])
    out = []
    for c in sorted({c for c, m in auc if m == method}):
        mine = float(np.mean(auc[c, method]))
        others = [(float(np.mean(auc[c, b])), b) for b in baselines if (c, b) in auc]
        best, name = max(others) if others else (float("nan"), "–")
        out.append((c, mine, name, best, bool(others) and mine >= best - tie))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="a benchmark's output folder")
    ap.add_argument("--dataset", default=None, help="default: the folder's only dataset")
    ap.add_argument("--versus", default=None, help="a method to set against the baselines")
    ap.add_argument("--baselines", default=BASELINES, help="comma-separated methods")
    ap.add_argument("--tie", type=float, default=0.0, help="AUC gap that still counts as tied")
    ap.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="B",
        help="resamples of the test items: the sd their draw puts on each mean",
    )
    args = ap.parse_args()
    rows = read_results(Path(args.bench) / "results.csv")
    datasets = sorted({r["dataset"] for r in rows})
    dataset = args.dataset or (datasets[0] if len(datasets) == 1 else None)
    if dataset is None:
        raise SystemExit(f"--dataset: the folder holds {', '.join(datasets) or 'no rows'}")
    if args.bootstrap < 0:
        raise SystemExit("--bootstrap: a number of resamples >= 0 is expected")
    boot = args.bootstrap > 0
    extra = (" test-draw sd |", " --- |") if boot else ("", "")
    print("| method | classes | runs | our mean |" + extra[0] + " paper mean, same classes | "
          "fit s per class | score s per class | machine |")  # fmt: skip
    print("| --- | --- | --- | --- |" + extra[1] + " --- | --- | --- | --- |")
    for s in summary(rows, dataset):
        paper = f"{s['paper']:.3f}" if s["paper"] is not None else "–"
        classes = ",".join(str(c) for c in s["classes"])
        ours = f"{s['ours']:.4f}" + (f" ± {s['sd']:.4f}" if s["sd"] is not None else "")
        if boot:
            sd = draw_sd(Path(args.bench), dataset, s["method"], rows, args.bootstrap)
            ours += " | " + ("–" if sd is None else f"{sd:.4f}")
        print(f"| {s['method']} | {classes} | {s['runs']} | {ours} | {paper} | {s['fit_s']:.0f} | "
              f"{s['score_s']:.1f} | {'; '.join(s['machines'])} |")  # fmt: skip
    if args.versus:
        baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
        table = versus(rows, dataset, args.versus, baselines, args.tie)
        print(f"\n| class | {args.versus} | best of {', '.join(baselines)} | best or tied |")
        print("| --- | --- | --- | --- |")
        for c, mine, name, best, won in table:
            rival, verdict = (f"{name} {best:.4f}", "yes" if won else "no")
            if name == "–":  # no baseline rows for this class yet: not judged
                rival, verdict = "–", "–"
            print(f"| {c} | {mine:.4f} | {rival} | {verdict} |")
        wins = sum(w for *_, w in table)
        judged = sum(name != "–" for _, _, name, _, _ in table)
        print(f"{args.versus} best or tied on {wins} of {judged} classes with baseline rows")


if __name__ == "__main__":
    main()
