"""The resumable Table 1 benchmark: one row per (dataset, normal class, method, run).

Rows are appended to ``results.csv`` as they finish, with each row's test labels and scores
in ``scores/``; a rerun skips the rows already there, so an interruption loses at most the
row in progress (and GAN training itself resumes from its checkpoint in ``work/``).

``replace`` names methods to run again under today's settings (after a preset changed their
parameters): their rows, of every class and run, move to ``OUT/replaced.csv``, their scores
to ``OUT/replaced/<time>/`` and their entry of ``settings.json`` is dropped, before the run
starts; no row or score file is deleted (figures are redrawn). ``settings.json`` remembers the
replacement, so the same command run again (to resume it, or for other classes) keeps the rows
it has written; a method is set aside again only when its parameters changed since. A command
refused for other settings moves nothing. GANs kept in ``OUT/work/`` are not retrained: a
change to a GAN's own settings needs another output folder.

A run holds ``OUT/.lock``: a second process on the same folder stops at once. Under torchrun
the (normal class, run) groups of rows still to do are shared out over the processes, each
group's methods on one process (they may share a trained GAN); each appends its rows under
``.results.csv.lock``, so every row is written once, and rank 0 writes the reports.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

from adgan import distributed
from adgan.benchmark.figures import plot_gallery, plot_roc, plot_trajectories
from adgan.benchmark.tables import markdown_table, not_run_note, runs_note
from adgan.errors import ConfigError
from adgan.evaluate import evaluate_class, load_for
from adgan.files import (
    as_json,
    atomic_write,
    complete_rows,
    differences,
    exclusive,
    read_json_object,
    write_json,
)
from adgan.presets import Preset
from adgan.progress import progress_bar

log = logging.getLogger(__name__)

FIELDS = [
    "dataset", "normal_class", "method", "run", "seed", "auc", "n_train", "n_test",
    "n_anomalous", "fit_seconds", "score_seconds", "preset", "device", "adgan_version",
    "torch_version", "machine", "date",
]  # fmt: skip
# replaced.csv: the rows set aside, and the folder of replaced/ that holds their scores
REPLACED_FIELDS = [*FIELDS, "replaced_to"]


def read_results(path: Path) -> list[dict]:
    """Rows of results.csv; a last row cut short by an interruption is dropped."""
    rows = []
    for r in complete_rows(path):
        try:
            r["auc"] = float(r["auc"])
            r["normal_class"] = int(r["normal_class"])
            r["run"] = int(r["run"])
        except (TypeError, ValueError, KeyError):
            continue
        rows.append(r)
    return rows


def _write_results(path: Path, rows: list[dict], fields: list[str] = FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda fh: fh.write(buf.getvalue().encode()))


def _append(path: Path, row: dict) -> None:
    """One row at the end of ``path``, whole, under its lock (several processes append)."""
    with exclusive(path.with_name(f".{path.name}.lock"), str(path), wait=True):
        with path.open("a", newline="") as fh:
            csv.DictWriter(fh, FIELDS, extrasaction="ignore").writerow(row)
            fh.flush()
            os.fsync(fh.fileno())


def run_benchmark(
    dataset: str,
    classes: list[int],
    methods: list[str],
    preset: Preset,
    out: str | Path,
    runs: int = 1,
    data_root: str | None = None,
    seed: int = 0,
    device: str = "auto",
    trajectories: bool = True,
    extra_params: dict | None = None,
    progress: bool = True,
    replace: list[str] | tuple = (),
) -> list[dict]:
    out = Path(out)
    if isinstance(replace, str):
        replace = [m.strip() for m in replace.split(",") if m.strip()]
    stray = [m for m in replace if m not in methods]
    if stray:
        raise ConfigError(
            f"replace: {', '.join(stray)} not among the methods ({', '.join(methods)})"
        )
    if extra_params:
        preset = Preset(**{**preset.__dict__, "params": {**preset.params, **extra_params}})
    lock = exclusive(out / ".lock", str(out)) if distributed.is_first() else None
    with lock if lock is not None else contextlib.nullcontext():
        return _run(
            dataset, classes, methods, preset, out, runs, data_root, seed, device,
            trajectories, progress, tuple(replace),
        )  # fmt: skip


def _run(
    dataset, classes, methods, preset, out, runs, data_root, seed, device, trajectories, progress,
    replace=(),
) -> list[dict]:  # fmt: skip
    results = out / "results.csv"

    def prepare() -> list[tuple]:
        (out / "scores").mkdir(parents=True, exist_ok=True)
        settings = {
            "dataset": dataset, "preset": preset.name, "seed": seed, "protocol": preset.protocol
        }  # fmt: skip
        own = {m: _own_params(m, preset.params_for(m)) for m in methods}
        if replace:
            # a command refused for its other settings must not have moved anything
            _check_settings(
                out, settings, {m: own[m] for m in own if m not in replace}, write=False
            )
            _set_aside(out, {m: own[m] for m in replace})
        _check_settings(out, settings, own)
        rows = read_results(results)
        _write_results(results, rows)  # drops a half-written last line, keeps the header
        return [(r["dataset"], r["normal_class"], r["method"], r["run"]) for r in rows]

    # rank 0's list for all: rows other ranks append from now on must not change the shares
    done = set(distributed.on_first(prepare))
    train, test = load_for(dataset, data_root)
    groups = [
        (r, c, [m for m in methods if (dataset, c, m, r) not in done])
        for r in range(runs)
        for c in classes
    ]
    mine = distributed.shard([g for g in groups if g[2]])  # each group on one process
    bar = progress_bar(
        progress and distributed.is_first(),
        sum(len(g[2]) for g in mine),
        f"benchmark {dataset}",
        "row",
    )
    try:
        with distributed.alone():  # each row trained and scored by one process
            for r, c, pending in mine:
                keep: dict = {}
                for rec in evaluate_class(
                    train,
                    test,
                    dataset,
                    c,
                    pending,
                    preset,
                    seed=seed,
                    run=r,
                    device=device,
                    work_dir=out / "work",
                    keep=keep,
                ):
                    det, task, scores, parts = keep.pop(rec["method"])
                    _save_scores(scores_path(out, dataset, c, rec["method"], r), task, scores,
                                 parts)  # fmt: skip
                    if rec["method"] == "adgan" and r == 0:
                        plot_gallery(task.x_test, scores, path=out / f"gallery-{dataset}-c{c}.png")
                    _append(results, rec)
                    del det
                    bar.set_postfix_str(f"class {c} {rec['method']} AUC {rec['auc']:.3f}")
                    bar.update(1)
    finally:
        bar.close()
    distributed.wait_all()

    def finish() -> list[dict]:
        write_reports(out, dataset)
        if trajectories and not (out / "trajectories.png").exists():
            figure2(
                train, test, dataset, classes[0], preset, out / "trajectories.png", seed, device
            )
        return read_results(results)

    return distributed.on_first(finish)


def scores_path(out: Path, dataset: str, normal_class: int, method: str, run: int) -> Path:
    """Where a row's labels and scores are kept:
    ``OUT/scores/<dataset>-c<class>-<method>-r<run>.npz``."""
    return out / "scores" / f"{dataset}-c{normal_class}-{method}-r{run}.npz"


def _set_aside(out: Path, methods: dict[str, dict]) -> None:
    """Move the rows of ``methods`` (name: today's parameters) from results.csv to
    replaced.csv, their score files to replaced/<UTC time>/, and drop their entry from
    settings.json, which records the replacement. A method already replaced, whose recorded
    parameters are today's, is left alone: its rows are the replacement's own (a resumed or
    extended run). Ordered so that an interruption at any point loses nothing: scores first,
    then replaced.csv (a row already there is not added twice), then results.csv, then
    settings.json."""
    path = out / "settings.json"
    record = read_json_object(path, "benchmark settings record") if path.exists() else {}
    recorded, done = record.get("methods", {}), record.get("replaced", {})
    resumed = [
        m for m, params in methods.items()
        if m in done and m in recorded
        and not _param_differences(m, recorded[m], params)
    ]  # fmt: skip
    for m in resumed:
        log.info("%s was replaced (%s) under today's settings: its rows are kept", m, done[m])
    names = [m for m in methods if m not in resumed]
    if not names:
        return
    results = out / "results.csv"
    rows = read_results(results)
    gone = [r for r in rows if r["method"] in names]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    shelf = out / "replaced" / stamp
    for k in range(2, 1000):  # a folder of its own, even within one second
        if not shelf.exists():
            break
        shelf = out / "replaced" / f"{stamp}-{k}"
    if gone:
        for r in gone:
            f = scores_path(out, r["dataset"], r["normal_class"], r["method"], r["run"])
            if f.exists():
                shelf.mkdir(parents=True, exist_ok=True)
                os.replace(f, shelf / f.name)
            r["replaced_to"] = shelf.name
        aside = out / "replaced.csv"
        old = read_results(aside) if aside.exists() else []
        seen = {tuple(r.get(f) for f in FIELDS) for r in old}
        new = [r for r in gone if tuple(r.get(f) for f in FIELDS) not in seen]
        _write_results(aside, [*old, *new], REPLACED_FIELDS)
        _write_results(results, [r for r in rows if r["method"] not in names])
        log.info("set aside %d rows of %s in %s", len(gone), ", ".join(names), out)
    write_json(path, {
        **record,
        "methods": {m: p for m, p in recorded.items() if m not in names},
        "replaced": {**done, **{m: shelf.name for m in names}},
    })  # fmt: skip


def _save_scores(path: Path, task, scores: np.ndarray, parts: dict | None = None) -> None:
    """Labels, scores and test indices, and a score's parts (``part_NAME``) where the
    detector gives them (adgan-plus)."""
    arrays = {"y": task.y_test, "score": scores, "index": task.test_index}
    arrays.update({f"part_{k}": v for k, v in (parts or {}).items()})
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _own_params(method: str, params: dict) -> dict:
    """The parameters of ``params`` that ``method`` takes (a preset's [params] serve all)."""
    from adgan.registry import detector_params

    accepted = detector_params(method)
    return {k: v for k, v in params.items() if k in accepted}


def _param_differences(method: str, before: dict, now: dict) -> list[str]:
    """The parameters of ``method`` that differ: one named on one side only counts at the
    detector's default; one the detector no longer takes is ignored."""
    from adgan.registry import detector_params

    return differences(before, now, defaults=detector_params(method))


def _check_settings(
    out: Path, settings: dict, methods: dict[str, dict], write: bool = True
) -> None:
    """A rerun resumes only with the settings of the rows already written: the same dataset,
    seed and protocol, and for each method run before, the same parameters. A method not
    run before adds its parameters, so one folder can grow by methods over invocations
    (recorded unless ``write`` is False). The preset's name is not compared, what it sets
    is: a preset file copied under another name and edited for one method continues the
    folder (``--replace`` that method); each row records the preset it was made with."""

    path = out / "settings.json"
    settings = as_json(settings)
    methods = as_json(methods)
    old = read_json_object(path, "benchmark settings record") if path.exists() else None
    replaced = None
    if old is not None:
        old_methods = old.pop("methods", {})
        replaced = old.pop("replaced", None)  # kept as it is; _set_aside reads it
        # a record holding only a replacement (made before any settings) has nothing to compare
        changed = differences(old, settings, ignore=("preset",)) if old else []
        if changed:
            raise ConfigError(
                f"{out} holds results made with other settings ({', '.join(changed)} differ "
                f"from {path}); use another output folder"
            )
        for m, params in methods.items():
            if m not in old_methods:
                continue
            diff = _param_differences(m, old_methods[m], params)
            if diff:
                raise ConfigError(
                    f"{out} holds {m} results made with other parameters ({', '.join(diff)} "
                    f"differ from {path}); use another output folder"
                )
        methods = {**old_methods, **methods}
    if write and (old is None or methods != old_methods):
        extra = {} if replaced is None else {"replaced": replaced}
        write_json(path, {**settings, "methods": methods, **extra})


def write_reports(out: Path, dataset: str) -> None:
    """table.md and roc.png from everything in results.csv and scores/: the methods of
    earlier invocations too (a table completed over several runs), in the registry's
    order, then any others by name."""
    from adgan.registry import DETECTORS

    rows = [r for r in read_results(out / "results.csv") if r["dataset"] == dataset]
    seen = {r["method"] for r in rows}
    present = [m for m in DETECTORS if m in seen] + sorted(seen - set(DETECTORS))
    table = markdown_table(rows, dataset, present)
    note = not_run_note(dataset, seen)
    text = (
        f"# {dataset}: one-versus-all ROC-AUC\n\nEach cell: ours (the paper's Table 1 or "
        f"Section 4.3 value). Ours is the mean over runs ({runs_note(rows, dataset, present)}); "
        "means are recomputed from the rows; a mean row's spread is that of each run's "
        "mean over the classes.\n\n" + table + "\n" + (f"\n{note}\n" if note else "")
    )
    atomic_write(out / "table.md", lambda fh: fh.write(text.encode()))
    curves: dict[str, list] = {}
    aucs: dict[str, list[float]] = {}
    for r in rows:
        f = scores_path(out, dataset, r["normal_class"], r["method"], r["run"])
        if f.exists():
            with np.load(f) as z:
                curves.setdefault(r["method"], []).append((z["y"], z["score"]))
            aucs.setdefault(r["method"], []).append(r["auc"])
    if curves:
        plot_roc(
            {m: curves[m] for m in present if m in curves},
            {m: float(np.mean(v)) for m, v in aucs.items()},
            f"{dataset}: ROC averaged over normal classes",
            path=out / "roc.png",
        )


def figure2(
    train,
    test,
    dataset,
    normal_class,
    preset: Preset,
    path: Path,
    seed: int,
    device: str,
    n_images: int = 200,
) -> Path:
    """Figure 2: ADGAN with a 2-dimensional latent space; the search's latent coordinates of
    normal and anomalous test images at several steps, point size = loss."""
    from adgan.data import one_vs_all
    from adgan.registry import make_detector

    params = {
        **preset.params_for("adgan"),
        "latent_dim": 2,
        "calibration": 0,
        "random_state": seed,
        "device": device,
    }
    task = one_vs_all(train, test, normal_class, n_test=n_images, seed=seed)
    det = make_detector("adgan", **params).fit(task.x_train)
    res = det.search(task.x_test, record=True)
    plot_trajectories(res.z_path, res.loss_path, task.y_test.astype(bool), path=path)
    return path
