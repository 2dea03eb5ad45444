"""Table 1 of the paper beside our measurements."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

#: our method name -> the paper's Table 1 column
PAPER_COLUMN = {
    "kde": "kde_pca",
    "kde-alexnet": "kde_alexnet",
    "ocsvm": "ocsvm_pca",
    "ocsvm-alexnet": "ocsvm_alexnet",
    "iforest": "iforest",
    "gmm": "gmm",
    "dcae": "dcae",
    "anogan": "anogan",
    "vae": "vae",
    "adgan": "adgan",
}
#: Section 4.3's means of the two alternative scores (no per-class figures are given)
PAPER_MEANS = {
    ("mnist", "discriminator"): 0.625,
    ("cifar10", "discriminator"): 0.513,
    ("mnist", "prior"): 0.721,
    ("cifar10", "prior"): 0.554,
}


def paper_table() -> dict[tuple[str, int, str], float]:
    """{(dataset, normal_class, our method): the paper's AUC}; printed mean rows are left out
    (means are recomputed from the rows)."""
    out: dict[tuple[str, int, str], float] = {}
    text = (resources.files("adgan.reference") / "table1.csv").read_text()
    for row in csv.DictReader(text.splitlines()):
        if row["normal_class"] == "mean":
            continue
        for ours, col in PAPER_COLUMN.items():
            out[(row["dataset"], int(row["normal_class"]), ours)] = float(row[col])
    return out


def paper_mean(dataset: str, method: str, classes: list[int]) -> float | None:
    ref = paper_table()
    vals = [ref.get((dataset, c, method)) for c in classes]
    if vals and all(v is not None for v in vals):
        return float(np.mean(vals))
    return PAPER_MEANS.get((dataset, method)) if len(classes) == 10 else None


def markdown_table(rows: list[dict], dataset: str, methods: list[str]) -> str:
    """Table 1's layout: a row per normal class and a mean row, a column per method; each
    cell 'ours (paper)', ours = mean ± standard deviation over runs."""
    ref = paper_table()
    classes = sorted({int(r["normal_class"]) for r in rows if r["dataset"] == dataset})
    by: dict[tuple[int, str], list[float]] = {}
    for r in rows:
        if r["dataset"] == dataset:
            by.setdefault((int(r["normal_class"]), r["method"]), []).append(float(r["auc"]))
    head = "| class | " + " | ".join(methods) + " |"
    lines = [head, "|" + " --- |" * (len(methods) + 1)]
    for c in classes:
        cells = []
        for m in methods:
            cells.append(_cell(by.get((c, m)), ref.get((dataset, c, m))))
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    cells = []
    for m in methods:
        per_class = [np.mean(by[(c, m)]) for c in classes if (c, m) in by]
        complete = len(per_class) == len(classes)
        ours = None
        if per_class and complete:
            per_run = run_means(rows, dataset, m, classes)
            # mean ± sd over runs when several runs cover every class, else the class mean
            ours = per_run if len(per_run) > 1 else [float(np.mean(per_class))]
        cells.append(_cell(ours, paper_mean(dataset, m, classes)))
    lines.append("| mean | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_means(rows: list[dict], dataset: str, method: str, classes: list[int]) -> list[float]:
    """``method``'s mean ROC-AUC over ``classes``, one per run that has a row for every one
    of them (a run missing a class is left out), in run order."""
    auc: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["dataset"] == dataset and r["method"] == method:
            auc.setdefault(int(r["run"]), {})[int(r["normal_class"])] = float(r["auc"])
    return [
        float(np.mean([auc[run][c] for c in classes]))
        for run in sorted(auc)
        if all(c in auc[run] for c in classes)
    ]


def runs_note(rows: list[dict], dataset: str, methods: list[str]) -> str:
    """How many runs each method's cells average, e.g. "adgan, discriminator: 2 runs
    (± the standard deviation over runs); the others: 1 run"."""
    groups: dict[int, list[str]] = {}  # number of runs -> the methods that have it
    for m in methods:
        n = len({r["run"] for r in rows if r["dataset"] == dataset and r["method"] == m})
        groups.setdefault(n, []).append(m)
    parts = []
    for n in sorted(groups, reverse=True):
        names = "every method" if len(groups) == 1 else ", ".join(groups[n])
        if len(groups) > 1 and n == min(groups):
            names = "the others"
        runs = f"{n} run" + ("s (± the standard deviation over runs)" if n > 1 else "")
        parts.append(f"{names}: {runs}")
    return "; ".join(parts)


def not_run_note(dataset: str, present: set[str] | list[str]) -> str:
    """A sentence naming the paper's Table 1 columns that have no row here, each with the
    paper's ten-class mean, so that a table missing them says so ("" when none is missing or
    the paper has no such column for ``dataset``)."""
    classes = list(range(10))
    missing = {m: paper_mean(dataset, m, classes) for m in PAPER_COLUMN if m not in present}
    missing = {m: v for m, v in missing.items() if v is not None}
    if not missing:
        return ""
    text = (
        "Table 1 columns not run here: "
        + ", ".join(f"{m} (paper mean {v:.3f})" for m, v in missing.items())
        + "."
    )
    if any(m.endswith("-alexnet") for m in missing):
        text += (
            " The *-alexnet methods need ImageNet weights for AlexNet, read from a torchvision"
            " state dict: they join --methods all only with --alexnet-weights."
        )
    return text


def _cell(values: list[float] | None, paper: float | None) -> str:
    if not values:
        ours = "–"
    elif len(values) == 1:
        ours = f"{values[0]:.3f}"
    else:
        ours = f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    return f"{ours} ({paper:.3f})" if paper is not None else ours
