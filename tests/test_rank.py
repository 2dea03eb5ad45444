"""Ranking an unlabelled collection: streaming, resume, skipped files, lmdb, galleries."""

import csv
import io

import numpy as np
import pytest
from PIL import Image

from adgan import ADGAN
from adgan.cli import main
from adgan.errors import ConfigError
from adgan.rank import rank_collection

TINY = dict(
    objective="wgan-gp",
    iterations=3,
    width=4,
    latent_dim=6,
    n_seeds=2,
    steps=2,
    batch_size=8,
    calibration=6,
    device="cpu",
)


def _normal(rng):
    a = rng.integers(0, 40, size=(8, 8), dtype=np.uint8)
    a[1:7, 3:5] = 220
    return a


@pytest.fixture(scope="module")
def detector():
    rng = np.random.default_rng(0)
    x = np.stack([_normal(rng) for _ in range(30)])[:, None]
    return ADGAN(**TINY).fit(x)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "coll"
    (root / "sub").mkdir(parents=True)
    for i in range(10):
        Image.fromarray(_normal(rng)).convert("RGB").save(root / f"n{i:02d}.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(root / "sub" / "gray_white.png")
    (root / "broken1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "broken2.jpg").write_bytes(b"")
    good = io.BytesIO()
    Image.fromarray(_normal(rng)).save(good, format="PNG")
    (root / "sub" / "truncated.png").write_bytes(good.getvalue()[:40])
    Image.fromarray(_normal(rng)).save(root / "<img src=x onerror=alert(1)>.png")
    return root


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_rank_folder_skips_corrupt_files_and_escapes_paths(detector, folder, tmp_path):
    res = rank_collection(detector, folder, tmp_path / "out", chunk=4, progress=False)
    rows = _rows(tmp_path / "out" / "scores.csv")
    assert res.n_scored == len(rows) == 12
    assert set(rows[0]) == {"path", "score", "percentile", "flagged"}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    skipped = {r["path"] for r in _rows(tmp_path / "out" / "skipped.csv")}
    assert skipped == {"broken1.png", "broken2.jpg", "sub/truncated.png"}
    page = (tmp_path / "out" / "gallery.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("data:image/png;base64,") == 2 * 12
    for name in ("most_anomalous.png", "least_anomalous.png"):
        Image.open(tmp_path / "out" / name).verify()


def test_interrupted_rank_resumes_to_the_same_csv(detector, folder, tmp_path, monkeypatch):
    full = tmp_path / "full"
    rank_collection(detector, folder, full, chunk=3, progress=False)
    part = tmp_path / "part"
    real = type(detector).anomaly_score
    calls = {"n": 0}

    def flaky(self, X):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, X)

    monkeypatch.setattr(type(detector), "anomaly_score", flaky)
    with pytest.raises(KeyboardInterrupt):
        rank_collection(detector, folder, part, chunk=3, progress=False)
    assert len(_rows(part / "scores.csv")) == 6  # two finished chunks kept
    monkeypatch.setattr(type(detector), "anomaly_score", real)
    rank_collection(detector, folder, part, chunk=3, progress=False)
    assert (part / "scores.csv").read_text() == (full / "scores.csv").read_text()
    assert (part / "skipped.csv").read_text() == (full / "skipped.csv").read_text()


def test_rank_lmdb_database(detector, tmp_path):
    lmdb = pytest.importorskip("lmdb", reason="the lmdb package is an optional dependency")
    rng = np.random.default_rng(2)
    env = lmdb.open(str(tmp_path / "db_lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(7):
            buf = io.BytesIO()
            Image.fromarray(_normal(rng)).convert("RGB").resize((12, 10)).save(
                buf, format="WEBP" if i % 2 else "JPEG"
            )
            txn.put(f"{i:040x}".encode(), buf.getvalue())
        txn.put(b"bad", b"garbage")
    env.close()
    res = rank_collection(detector, tmp_path / "db_lmdb", tmp_path / "o", progress=False)
    assert res.n_scored == 7 and res.n_skipped == 1


def test_threshold_from_calibration_fpr(detector, folder, tmp_path):
    res = rank_collection(detector, folder, tmp_path / "o", fpr=0.5, progress=False)
    cal = -detector.calibration_scores_
    assert res.threshold == pytest.approx(np.quantile(cal, 0.5))


def test_cli_rank(detector, folder, tmp_path, capsys):
    model = detector.save(tmp_path / "m.pt")
    assert (
        main(
            [
                "rank",
                "--model",
                str(model),
                "--data",
                str(folder),
                "--out",
                str(tmp_path / "r"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "ranked 12 images (3 skipped)" in capsys.readouterr().out
    assert (
        main(
            [
                "rank",
                "--model",
                str(model),
                "--data",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "r2"),
                "--quiet",
            ]
        )
        == 1  # a missing collection: data, not usage
    )


def test_rank_refuses_an_output_folder_of_another_model(detector, folder, tmp_path):
    rank_collection(detector, folder, tmp_path / "o", progress=False)
    other = ADGAN(**{**TINY, "random_state": 5}).fit(
        np.stack([_normal(np.random.default_rng(i)) for i in range(30)])[:, None]
    )
    with pytest.raises(ConfigError, match="another model"):
        rank_collection(other, folder, tmp_path / "o", progress=False)
