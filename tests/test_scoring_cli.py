"""One scoring path: score streams, resumes, reads lmdb and takes --fpr as rank does; the
same class syntax everywhere; --json; each result printed once."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from adgan.cli import main

TINY_PRESET = """
dataset = "digits"
[protocol]
n_test = 40
[params]
objective = "wgan-gp"
iterations = 3
width = 4
latent_dim = 6
n_seeds = 2
steps = 2
batch_size = 16
calibration = 6
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    (root / "tiny.toml").write_text(TINY_PRESET)
    args = ["train", "--dataset", "digits", "--normal-class", "3", "--preset"]
    assert main([*args, str(root / "tiny.toml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _score(model, *args):
    return main(["score", "--model", str(model / "run"), *args, "--quiet"])


def test_score_a_dataset_split_with_fpr_and_json(model, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert _score(model, "--dataset", "digits", "--out", str(out), "--fpr", "0.5", "--json") == 0
    res = json.loads(capsys.readouterr().out)  # stdout holds the JSON document alone
    rows = _rows(out)
    assert res["scored"] == len(rows) == 599 and res["skipped"] == 0
    assert res["flagged"] == sum(int(r["flagged"]) for r in rows) > 0
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert not (tmp_path / "s.csv.work").exists()
    # a folder and a dataset at once: one of them would be ignored
    argv = ["--dataset", "digits", "--data", str(tmp_path), "--out", str(tmp_path / "t.csv")]
    assert _score(model, *argv) == 2
    assert "--data and --dataset: give one of them, not both" in capsys.readouterr().err


def test_score_resumes_an_interrupted_run(model, tmp_path, monkeypatch):
    from adgan.detectors.adgan import ADGAN

    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    args = ["--dataset", "digits", "--chunk", "50"]
    assert _score(model, *args, "--out", str(full)) == 0
    real, calls = ADGAN.anomaly_score, {"n": 0}

    def flaky(self, X):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, X)

    monkeypatch.setattr(ADGAN, "anomaly_score", flaky)
    assert _score(model, *args, "--out", str(part)) == 130
    assert not part.exists() and len(_rows(tmp_path / "part.csv.work" / "scores.csv")) == 150
    monkeypatch.setattr(ADGAN, "anomaly_score", real)
    assert _score(model, *args, "--out", str(part)) == 0
    assert part.read_text() == full.read_text()


def test_score_reads_lmdb_and_lists_unreadable_images(model, tmp_path, capsys):
    lmdb = pytest.importorskip("lmdb", reason="the lmdb package is an optional dependency")
    from sklearn.datasets import load_digits

    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, img in enumerate(load_digits().images[:6]):
            buf = io.BytesIO()
            Image.fromarray((img * 15).astype(np.uint8)).save(buf, format="PNG")
            txn.put(f"k{i}".encode(), buf.getvalue())
        txn.put(b"bad", b"garbage")
    env.close()
    out = tmp_path / "db.csv"
    assert _score(model, "--data", str(tmp_path / "db"), "--out", str(out)) == 0
    assert len(_rows(out)) == 6
    assert [r["id"] for r in _rows(tmp_path / "db.skipped.csv")] == ["bad"]
    assert "1 unreadable" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["rank", "score"])
def test_rank_and_score_take_no_seed(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--model", "m", "--data", "d", "--out", "o", "--seed", "1"])
    assert "unrecognized arguments: --seed 1" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0-2", "1,2", "all"])
def test_train_takes_the_class_syntax_of_evaluate_for_one_class(text, tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--normal-class", text, "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--normal-class: a detector learns one class" in err


def test_evaluate_prints_each_result_once(model, capsys):
    args = ["evaluate", "--preset", str(model / "tiny.toml"), "--methods", "mean-image"]
    assert main([*args, "--normal-class", "0,1"]) == 0
    cap = capsys.readouterr()
    assert (cap.out + cap.err).count("class 0 mean-image") == 1
    assert main([*args, "--normal-class", "0,1", "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["normal_class"] for r in doc["records"]] == [0, 1]
    assert set(doc["mean_auc"]) == {"mean-image"}


def test_nothing_is_left_behind_where_there_is_nothing_to_read(model, tmp_path, capsys):
    empty, where = tmp_path / "empty", tmp_path / "outs"
    empty.mkdir()
    where.mkdir()
    cases = [
        (["rank", "--data", str(empty), "--out", str(where / "r")], "no image files"),
        (["rank", "--data", str(tmp_path / "no"), "--out", str(where / "r")], "expected a folder"),
        (["score", "--data", str(empty), "--out", str(where / "s.csv")], "no image files"),
    ]
    for argv, message in cases:
        assert main([argv[0], "--model", str(model / "run"), *argv[1:], "--quiet"]) == 1
        assert message in capsys.readouterr().err
    assert list(where.iterdir()) == []  # no folder, lock or work folder made
