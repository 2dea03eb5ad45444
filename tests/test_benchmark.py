"""The resumable benchmark on digits with tiny settings: files, resume, reference table."""

import csv
import os
import subprocess
import sys

import pytest

from adgan.benchmark.figures import line_styles
from adgan.benchmark.runner import read_results, run_benchmark
from adgan.benchmark.tables import (
    PAPER_COLUMN,
    markdown_table,
    not_run_note,
    paper_table,
    run_means,
    runs_note,
)
from adgan.errors import ConfigError
from adgan.presets import Preset

TINY = Preset(
    name="tiny",
    protocol={"n_test": 40},
    params=dict(
        objective="wgan-gp",
        iterations=3,
        width=4,
        latent_dim=6,
        n_seeds=2,
        steps=2,
        batch_size=16,
        calibration=4,
    ),
)


def test_benchmark_writes_every_file_and_resumes(tmp_path):
    out = tmp_path / "bench"
    rows = run_benchmark("digits", [0], ["adgan", "mean-image"], TINY, out, progress=False)
    assert len(rows) == 2
    for name in ("results.csv", "table.md", "roc.png", "gallery-digits-c0.png", "trajectories.png"):
        assert (out / name).stat().st_size > 0, name
    first = {r["method"]: r["fit_seconds"] for r in read_results(out / "results.csv")}
    # an interrupted run: a row cut short at the end of the file
    with (out / "results.csv").open("a") as fh:
        fh.write("digits,1,adgan,0,0,0.9")
    rows = run_benchmark("digits", [0, 1], ["adgan", "mean-image"], TINY, out, progress=False)
    assert sorted((r["normal_class"], r["method"]) for r in rows) == [
        (0, "adgan"),
        (0, "mean-image"),
        (1, "adgan"),
        (1, "mean-image"),
    ]
    again = {r["method"]: r["fit_seconds"] for r in rows if r["normal_class"] == 0}
    assert again == first  # finished rows were not redone
    header = next(csv.reader((out / "results.csv").open()))
    for key in (
        "dataset",
        "normal_class",
        "method",
        "run",
        "seed",
        "auc",
        "n_train",
        "n_test",
        "fit_seconds",
        "score_seconds",
    ):
        assert key in header


def test_reports_cover_every_invocation(tmp_path):
    # a table completed over several invocations, each with its own methods
    for methods in (["mean-image"], ["kde"]):
        run_benchmark("digits", [0], methods, TINY, tmp_path, progress=False, trajectories=False)
    table = (tmp_path / "table.md").read_text()
    assert "| class | kde | mean-image |" in table
    assert len(read_results(tmp_path / "results.csv")) == 2


def test_roc_lines_are_told_apart():
    from adgan.registry import DETECTORS

    styles = line_styles(list(DETECTORS))  # 15 methods: more than one cycle of colours
    assert len({(st["color"], st["ls"]) for st in styles}) == len(DETECTORS)
    assert styles[0]["color"] == "black"  # ADGAN


def test_runs_give_spread_and_paper_column():
    rows = [
        {"dataset": "mnist", "normal_class": c, "method": "adgan", "run": r, "auc": a}
        for c, r, a in [(0, 0, 0.90), (0, 1, 0.92), (1, 0, 0.80), (1, 1, 0.84)]
    ]
    table = markdown_table(rows, "mnist", ["adgan"])
    assert "0.910 ± 0.014 (0.999)" in table  # class 0: mean, sd over runs, Table 1
    # means recomputed from the rows; the spread is that of each run's mean over the classes
    assert "| mean | 0.865 ± 0.021 (0.996) |" in table
    assert run_means(rows, "mnist", "adgan", [0, 1]) == pytest.approx([0.85, 0.88])
    # a run that misses a class gives no mean of its own, and a lone full run no spread
    part = rows[:3]
    assert run_means(part, "mnist", "adgan", [0, 1]) == pytest.approx([0.85])
    assert "| mean | 0.855 (0.996) |" in markdown_table(part, "mnist", ["adgan"])


def test_runs_note_counts_each_methods_runs():
    rows = [
        {"dataset": "mnist", "normal_class": 0, "method": m, "run": r, "auc": 0.5}
        for m, r in [("adgan", 0), ("adgan", 1), ("kde", 0), ("gmm", 0)]
    ]
    note = runs_note(rows, "mnist", ["adgan", "kde", "gmm"])
    assert note == "adgan: 2 runs (± the standard deviation over runs); the others: 1 run"
    assert runs_note(rows[2:], "mnist", ["kde", "gmm"]) == "every method: 1 run"


def test_table_names_the_papers_columns_not_run():
    note = not_run_note("cifar10", {"adgan", "kde", "ocsvm", "iforest", "gmm", "dcae", "vae"})
    assert note.startswith("Table 1 columns not run here: kde-alexnet (paper mean ")
    assert "ocsvm-alexnet" in note and "anogan (paper mean 0.612)" in note
    assert "--alexnet-weights" in note and "adgan (" not in note
    assert not_run_note("cifar10", set(PAPER_COLUMN)) == ""
    assert not_run_note("digits", set()) == ""  # the paper has no digits column


def test_reference_table_recomputes_the_cifar_dcae_mean():
    ref = paper_table()
    rows = [ref[("cifar10", c, "dcae")] for c in range(10)]
    assert sum(rows) / 10 == pytest.approx(0.555, abs=5e-4)


def test_benchmark_refuses_to_mix_settings(tmp_path):
    run_benchmark("digits", [0], ["mean-image"], TINY, tmp_path, progress=False, trajectories=False)
    with pytest.raises(ConfigError, match="other settings"):
        run_benchmark(
            "digits",
            [0],
            ["mean-image"],
            TINY,
            tmp_path,
            seed=1,
            progress=False,
            trajectories=False,
        )


def test_benchmark_keeps_the_parts_of_a_score(tmp_path):
    import numpy as np

    run_benchmark("digits", [0], ["adgan-plus"], TINY, tmp_path, progress=False,
                  trajectories=False, extra_params={"rotation_steps": 3})  # fmt: skip
    with np.load(tmp_path / "scores" / "digits-c0-adgan-plus-r0.npz") as z:
        assert sorted(k for k in z.files if k.startswith("part_")) == [
            "part_reconstruction", "part_rotation"
        ]  # fmt: skip
        np.testing.assert_allclose(z["part_reconstruction"] + z["part_rotation"], z["score"])
        saved = z["score"]
    # the score kept is the detector's own anomaly score
    from adgan.data import load_digits
    from adgan.evaluate import evaluate_class

    keep: dict = {}
    train, test = load_digits()
    preset = Preset(
        name="tiny", protocol=TINY.protocol, params={**TINY.params, "rotation_steps": 3}
    )
    list(evaluate_class(train, test, "digits", 0, ["adgan-plus"], preset, keep=keep,
                        work_dir=tmp_path / "w"))  # fmt: skip
    det, task, scores, parts = keep["adgan-plus"]
    np.testing.assert_array_equal(scores, det.anomaly_score(task.x_test))
    np.testing.assert_array_equal(scores, saved)  # the same seeds: the benchmark's figures


def test_replace_sets_a_methods_rows_aside_and_runs_it_again(tmp_path):
    import json

    def bench(pca_dims, replace=(), name="tiny"):
        params = {**TINY.params, "pca_dims": pca_dims}
        preset = Preset(name=name, protocol=TINY.protocol, params=params)
        return run_benchmark("digits", [0, 1], ["iforest", "mean-image"], preset, tmp_path,
                             progress=False, trajectories=False, replace=replace)  # fmt: skip

    first = {(r["normal_class"], r["method"]): r["auc"] for r in bench([20])}
    with pytest.raises(ConfigError, match="iforest results made with other parameters"):
        bench([5])
    # the preset copied under another name and edited for one method: its name is no setting
    rows = bench([5], replace=["iforest"], name="mine")
    assert len(rows) == 4
    again = {(r["normal_class"], r["method"]): r["auc"] for r in rows}
    assert again[(0, "mean-image")] == first[(0, "mean-image")]  # kept, not rerun
    assert again[(0, "iforest")] != first[(0, "iforest")]  # rerun with 5 PCA dimensions
    aside = read_results(tmp_path / "replaced.csv")
    assert {(r["normal_class"], r["method"], r["auc"]) for r in aside} == {
        (c, "iforest", first[(c, "iforest")]) for c in (0, 1)
    }
    shelved = sorted(p.name for p in (tmp_path / "replaced").glob("*/*.npz"))
    assert shelved == ["digits-c0-iforest-r0.npz", "digits-c1-iforest-r0.npz"]
    record = json.loads((tmp_path / "settings.json").read_text())
    assert record["methods"]["iforest"]["pca_dims"] == [5]


def _iforest(tmp_path, classes, pca_dims=20, **kw):
    params = {**TINY.params, "pca_dims": [pca_dims]}
    preset = Preset(name="tiny", protocol=TINY.protocol, params=params)
    return run_benchmark("digits", classes, ["iforest"], preset, tmp_path, progress=False,
                         trajectories=False, **kw)  # fmt: skip


def test_replace_run_again_keeps_the_rows_the_replacement_wrote(tmp_path):
    first = {r["normal_class"]: r["auc"] for r in _iforest(tmp_path, [0, 1])}
    _iforest(tmp_path, [0], pca_dims=5, replace=["iforest"])  # both rows aside, class 0 rerun
    new0 = read_results(tmp_path / "results.csv")
    rows = _iforest(tmp_path, [1], pca_dims=5, replace="iforest")  # the same, extended
    assert sorted(r["normal_class"] for r in rows) == [0, 1]
    assert [r for r in rows if r["normal_class"] == 0] == new0  # kept, not set aside again
    aside = read_results(tmp_path / "replaced.csv")
    assert sorted((r["normal_class"], r["auc"]) for r in aside) == sorted(first.items())
    shelves = [p.name for p in (tmp_path / "replaced").iterdir()]
    assert len(shelves) == 1 and {r["replaced_to"] for r in aside} == set(shelves)
    # a further change of parameters sets the rows aside again, in a folder of its own
    _iforest(tmp_path, [0, 1], pca_dims=8, replace=["iforest"])
    assert len(read_results(tmp_path / "replaced.csv")) == 4
    assert len(list((tmp_path / "replaced").iterdir())) == 2


def test_replace_within_one_second_shelves_apart(tmp_path, monkeypatch):
    import adgan.benchmark.runner as runner

    monkeypatch.setattr(runner.time, "strftime", lambda *a: "20260101T000000Z")
    _iforest(tmp_path, [0])
    _iforest(tmp_path, [0], pca_dims=5, replace=["iforest"])
    _iforest(tmp_path, [0], pca_dims=8, replace=["iforest"])
    shelves = sorted(p.name for p in (tmp_path / "replaced").iterdir())
    assert shelves == ["20260101T000000Z", "20260101T000000Z-2"]
    for shelf in shelves:
        assert (tmp_path / "replaced" / shelf / "digits-c0-iforest-r0.npz").exists()


def test_a_refused_replace_moves_nothing(tmp_path):
    _iforest(tmp_path, [0])
    before = (tmp_path / "results.csv").read_text()
    with pytest.raises(ConfigError, match="seed"):
        _iforest(tmp_path, [0], pca_dims=5, seed=1, replace=["iforest"])
    assert (tmp_path / "results.csv").read_text() == before
    assert not (tmp_path / "replaced.csv").exists()
    with pytest.raises(ConfigError, match="replace: kde not among the methods"):
        _iforest(tmp_path, [0], replace=["kde"])


def test_replace_interrupted_after_replaced_csv_adds_no_row_twice(tmp_path, monkeypatch):
    import adgan.benchmark.runner as runner

    _iforest(tmp_path, [0, 1])
    write = runner._write_results

    def cut(path, rows, *a):
        if path.name == "results.csv":
            raise KeyboardInterrupt  # after replaced.csv, before results.csv
        write(path, rows, *a)

    monkeypatch.setattr(runner, "_write_results", cut)
    with pytest.raises(KeyboardInterrupt):
        _iforest(tmp_path, [0, 1], pca_dims=5, replace=["iforest"])
    monkeypatch.setattr(runner, "_write_results", write)
    rows = _iforest(tmp_path, [0, 1], pca_dims=5, replace=["iforest"])
    assert len(rows) == 2 and len(read_results(tmp_path / "replaced.csv")) == 2


def test_rows_name_the_vector_instructions_torch_ran_with():
    # a GAN trained under other vector instructions is another network: each row's machine
    # column names them, as torch's ATEN_CPU_CAPABILITY setting leaves them
    code = "from adgan.evaluate import environment; print(environment()['machine'])"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert " DEFAULT, " in out and out.strip().endswith("threads")
