"""The command line, end to end on tiny settings, and its one-line errors."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from adgan.cli import main

TINY_PRESET = """
description = "tests: seconds"
dataset = "digits"
[protocol]
n_test = 60
[params]
objective = "wgan-gp"
iterations = 3
width = 4
latent_dim = 6
n_seeds = 2
steps = 2
batch_size = 16
calibration = 5
"""


@pytest.fixture
def preset(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_PRESET)
    return str(p)


def test_evaluate_writes_records(tmp_path, preset, capsys):
    out = tmp_path / "r.json"
    rc = main(
        [
            "evaluate",
            "--dataset",
            "digits",
            "--normal-class",
            "0,1",
            "--methods",
            "adgan,mean-image,prior,discriminator",
            "--preset",
            preset,
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    recs = json.loads(out.read_text())
    assert len(recs) == 8
    for r in recs:
        for key in ("method", "auc", "n_train", "n_test", "fit_seconds", "score_seconds"):
            assert key in r
        assert 0.0 <= r["auc"] <= 1.0 and r["n_test"] == 60
    mean_image = [r for r in recs if r["method"] == "mean-image"]
    assert all(r["auc"] > 0.8 for r in mean_image)  # digits are easy for the sanity floor
    assert "mean over 2 classes" in capsys.readouterr().out


def _png_folder(root, n=12, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        a = rng.integers(0, 40, size=(8, 8), dtype=np.uint8)
        a[2:6, 3:5] = 220
        Image.fromarray(a).save(root / f"img{i:02d}.png")
    return root


def test_train_then_score_a_folder(tmp_path, preset):
    data = _png_folder(tmp_path / "normal")
    run = tmp_path / "run"
    assert (
        main(["train", "--data", str(data), "--preset", preset, "--out", str(run), "--quiet"]) == 0
    )
    assert (run / "detector.pt").exists() and (run / "gan" / "samples.png").exists()
    odd = tmp_path / "odd"
    _png_folder(odd, n=3, seed=1)
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(odd / "white.png")
    out = tmp_path / "scores.csv"
    assert (
        main(["score", "--model", str(run), "--data", str(odd), "--out", str(out), "--quiet"]) == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and set(rows[0]) == {"id", "score", "percentile", "flagged"}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "argv,needle,status",
    [
        (
            ["evaluate", "--dataset", "mnist", "--data-root", "/nonexistent/x"],
            "/nonexistent/x",
            1,
        ),
        (["evaluate", "--dataset", "digits", "--methods", "nope"], "unknown method 'nope'", 2),
        (["evaluate", "--dataset", "digits", "--preset", "nope"], "unknown preset 'nope'", 2),
        (["evaluate", "--dataset", "digits", "--normal-class", "x"], "--normal-class", 2),
        (
            ["score", "--model", "/nonexistent/run", "--dataset", "digits", "--out", "o.csv"],
            "not found",
            1,
        ),
    ],
)
def test_bad_input_is_one_line_error(argv, needle, status, capsys, monkeypatch):
    """2 for a value the command does not accept, 1 for data or a model it cannot read."""
    monkeypatch.delenv("ADGAN_DATA", raising=False)
    assert main(argv + ["--quiet"]) == status
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_missing_data_root_names_the_variable(capsys, monkeypatch):
    monkeypatch.delenv("ADGAN_DATA", raising=False)
    assert main(["evaluate", "--dataset", "mnist", "--quiet"]) == 1  # data, not usage
    err = capsys.readouterr().err
    assert "ADGAN_DATA" in err and "--data-root: not given" in err  # the flag, not the parameter


def test_empty_normal_class_in_a_folder_is_an_error(tmp_path, preset, capsys):
    (tmp_path / "empty").mkdir()
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "empty"),
                "--preset",
                preset,
                "--out",
                str(tmp_path / "r"),
                "--quiet",
            ]
        )
        == 1  # data, not usage
    )
    assert "empty" in capsys.readouterr().err


def test_evaluate_on_labelled_folder_trees(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for split, n in (("train", 12), ("test", 8)):
        for cls in ("bars", "blobs"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 40, size=(10, 10), dtype=np.uint8)
                if cls == "bars":
                    a[2:8, 4:6] = 220
                else:
                    a[3:7, 1:9] = 220
                Image.fromarray(a).convert("RGB").save(d / f"{i}.png")
    out = tmp_path / "r.json"
    rc = main(
        [
            "evaluate",
            "--train-data",
            str(tmp_path / "train"),
            "--test-data",
            str(tmp_path / "test"),
            "--normal-class",
            "bars",
            "--image-size",
            "8",
            "--methods",
            "mean-image",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    (rec,) = json.loads(out.read_text())
    assert rec["n_train"] == 12 and rec["n_test"] == 16 and rec["n_anomalous"] == 8
    assert rec["auc"] > 0.9 and rec["class_name"] == "bars"
    assert "train class bars mean-image" in capsys.readouterr().out  # by name, not index
    # every class by name, "all" as for the datasets
    argv = ["evaluate", "--train-data", str(tmp_path / "train"), "--test-data",
            str(tmp_path / "test"), "--image-size", "8", "--methods", "mean-image",
            "--json"]  # fmt: skip
    for classes in ("all", "blobs,bars"):
        assert main([*argv, "--normal-class", classes]) == 0
        got = json.loads(capsys.readouterr().out)["records"]
        assert sorted(r["class_name"] for r in got) == ["bars", "blobs"], classes
    assert (
        main(
            [
                "evaluate",
                "--train-data",
                str(tmp_path / "train"),
                "--test-data",
                str(tmp_path / "test"),
                "--normal-class",
                "nope",
                "--quiet",
            ]
        )
        == 2
    )
    assert "no sub-folder 'nope'" in capsys.readouterr().err


def test_library_errors_name_parameters_and_the_command_line_its_flags(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[params]\niteratons = 5\n")
    assert main(["evaluate", "--dataset", "digits", "--preset", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"adgan evaluate: error: --preset {bad}: unknown parameter 'iteratons'")
    assert main(["evaluate", "--dataset", "digits", "--device", "tpu", "--quiet"]) == 2
    assert "error: --device: expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    # also where no method would reach a device, and before a detector file is read
    argv = ["evaluate", "--dataset", "digits", "--methods", "mean-image", "--device", "tpu"]
    assert main([*argv, "--quiet"]) == 2
    assert "error: --device: expected auto" in capsys.readouterr().err
    argv = ["score", "--model", str(tmp_path / "none"), "--data", str(tmp_path), "--out",
            str(tmp_path / "s.csv"), "--device", "tpu", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    assert "error: --device: expected auto" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["rank", *argv[1:5], "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
        assert "error: --device: 'cuda' asked for, but CUDA is not available here" in (
            capsys.readouterr().err
        )


def test_evaluate_jobs_gives_the_records_of_one_job(tmp_path, preset, capsys):
    # two classes side by side, each in its own process, against the same two in turn
    def run(jobs, *extra):
        out = tmp_path / f"r{jobs}.json"
        argv = ["evaluate", "--dataset", "digits", "--normal-class", "3,0", "--preset", preset,
                "--methods", "adgan,mean-image", "--out", str(out), "--jobs", str(jobs),
                *extra]  # fmt: skip
        assert main(argv) == 0
        return json.loads(out.read_text()), capsys.readouterr().out

    one, _ = run(1, "--quiet")
    two, printed = run(2)  # with progress bars, drawn by the worker processes
    key = [(r["normal_class"], r["method"]) for r in one]
    assert key == [(3, "adgan"), (3, "mean-image"), (0, "adgan"), (0, "mean-image")]
    assert [(r["normal_class"], r["method"]) for r in two] == key  # --out in class order
    for a, b in zip(one, two, strict=True):
        assert a["n_test"] == b["n_test"] and a["n_train"] == b["n_train"]
        assert abs(a["auc"] - b["auc"]) < 1e-3  # thread counts differ: float rounding only
    assert printed.count("AUC") == 6  # each result once, then the two means
    assert main(["evaluate", "--dataset", "digits", "--jobs", "0", "--quiet"]) == 2
    assert "--jobs: expected at least 1, got 0" in capsys.readouterr().err


def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys):
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("mine\n")
    ev = ["evaluate", "--dataset", "digits", "--normal-class", "1", "--methods", "mean-image",
          "--quiet", "--out"]  # fmt: skip
    cases = [
        ([*ev, str(folder)], f"--out: {folder} is a folder; expected a file to write"),
        ([*ev, str(file / "x.json")], f"--out: {file} is a file, so {file / 'x.json'} cannot"),
        (["benchmark", "--dataset", "digits", "--classes", "1", "--methods", "mean-image",
          "--quiet", "--out", str(file)], f"--out: {file} is a file; expected a folder"),
        (["train", "--dataset", "digits", "--normal-class", "1", "--method", "mean-image",
          "--quiet", "--out", str(file)], f"--out: {file} is a file; expected a folder"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 1, argv  # the file system's: exit status 1
        out, err = capsys.readouterr()
        assert message in err and "AUC" not in out, (out, err)  # refused before the work
    assert file.read_text() == "mine\n" and list(folder.iterdir()) == []  # nothing made
    # paths given for later, wrong even where the methods asked for would not read them
    for flag, value, message in [
        ("--alexnet-weights", str(tmp_path / "no.pth"), "is not a file"),
        ("--work-dir", str(file), "is a file; expected a folder"),
    ]:
        assert main([*ev[:-1], flag, value]) == 1  # a model file, the file system: 1
        assert f"{flag}: {value} {message}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder"]
