"""Several processes with torchrun (gloo on the CPU): rank, score, train and benchmark give
one process's results; concurrent writers; a world that does not form."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from adgan.cli import main
from adgan.files import exclusive

TINY_PRESET = """
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


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cmd: list[str]) -> subprocess.Popen:
    """A launcher in its own process group, so that a test that times out ends its workers
    too (killing torchrun alone would leave them waiting for each other)."""
    return subprocess.Popen(
        cmd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(procs: list[subprocess.Popen], timeout: float = 180) -> list[tuple[str, str]]:
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", "-m", "adgan", *args, "--device", "cpu"]
    proc = _launch(cmd)
    ((out, err),) = _finish([proc])
    assert proc.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _same_ranking(a, b):
    ra, rb = _rows(a), _rows(b)
    assert [r["path"] for r in ra] == [r["path"] for r in rb]
    np.testing.assert_allclose(
        [float(r["score"]) for r in ra], [float(r["score"]) for r in rb], rtol=1e-5
    )
    assert [r["flagged"] for r in ra] == [r["flagged"] for r in rb]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Digits 8x8 as PNG files (class 0 to train on; a mix to rank, with a broken file),
    a tiny preset, and a model trained on them."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("dist")
    d = load_digits()
    imgs = (d.images * (255 / 16)).astype(np.uint8)
    for name, idx in (("train", np.flatnonzero(d.target == 0)[:48]), ("coll", range(500, 533))):
        (root / name).mkdir()
        for i in idx:
            Image.fromarray(imgs[i]).save(root / name / f"d{i:04d}.png")
    (root / "coll" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "tiny.toml").write_text(TINY_PRESET)
    train = ["train", "--data", str(root / "train"), "--image-size", "8", "--channels", "1"]
    train += ["--preset", str(root / "tiny.toml"), "--quiet"]
    assert main([*train, "--out", str(root / "model")]) == 0
    return root, train


def _rank_args(root, out):
    return ["rank", "--model", str(root / "model"), "--data", str(root / "coll")] + [
        "--out",
        str(out),
        "--chunk",
        "4",
        "--quiet",
    ]


def test_python_m_adgan_runs_the_command(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "adgan", "--version"], capture_output=True, text=True, env=_env()
    )
    assert res.returncode == 0 and res.stdout.startswith("adgan ")


def test_two_processes_rank_and_score_as_one(work, tmp_path):
    root, _ = work
    assert main(_rank_args(root, tmp_path / "one")) == 0
    res = torchrun(_rank_args(root, tmp_path / "two"))
    assert res.stdout.count("ranked 33 images (1 skipped)") == 1  # printed once, by rank 0
    _same_ranking(tmp_path / "one" / "scores.csv", tmp_path / "two" / "scores.csv")
    assert _rows(tmp_path / "two" / "skipped.csv")[0]["path"] == "broken.png"
    assert not list((tmp_path / "two").glob("*.part-*"))  # parts merged and removed
    for name in ("most_anomalous.png", "least_anomalous.png", "gallery.html"):
        assert (tmp_path / "two" / name).stat().st_size > 0
    # score shares the implementation: the same rows, under its own header
    torchrun(["score", "--model", str(root / "model"), "--data", str(root / "coll")]
             + ["--out", str(tmp_path / "s.csv"), "--chunk", "4", "--quiet"])  # fmt: skip
    scored = _rows(tmp_path / "s.csv")
    assert [r["id"] for r in scored] == [r["path"] for r in _rows(tmp_path / "one/scores.csv")]
    assert not (tmp_path / "s.csv.work").exists()


def test_two_nodes_of_one_process_rank_as_one(work, tmp_path):
    root, _ = work
    assert main(_rank_args(root, tmp_path / "one")) == 0
    port = _free_port()
    procs = [
        _launch(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1"]
            + [f"--node-rank={n}", "--master-addr=127.0.0.1", f"--master-port={port}"]
            + ["--rdzv-conf=timeout=60", "-m", "adgan"]
            + _rank_args(root, tmp_path / "two")
            + ["--device", "cpu"]
        )
        for n in (0, 1)
    ]
    outs = _finish(procs)
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    _same_ranking(tmp_path / "one" / "scores.csv", tmp_path / "two" / "scores.csv")


def test_resume_gathers_the_parts_of_killed_processes(work, tmp_path):
    """A 2-process run killed midway leaves each rank's part file (the last line of one
    cut short); a rerun, here with one process, finishes with the same ranking."""
    root, _ = work
    full = tmp_path / "full"
    assert main(_rank_args(root, full)) == 0
    rows = [(r["path"], r["score"]) for r in _rows(full / "scores.csv")]
    part = tmp_path / "part"
    part.mkdir()
    for f in ("meta.json",):
        (part / f).write_bytes((full / f).read_bytes())
    (part / "scores.csv").write_text("path,score\n" + "".join(f"{p},{s}\n" for p, s in rows[:5]))
    (part / "scores.part-0-of-2.csv").write_text(
        "path,score\n" + "".join(f"{p},{s}\n" for p, s in rows[5:9])
    )
    (part / "scores.part-1-of-2.csv").write_text(
        "path,score\n" + "".join(f"{p},{s}\n" for p, s in rows[9:12]) + f"{rows[12][0]},0.1"
    )
    assert main(_rank_args(root, part)) == 0
    assert (part / "scores.csv").read_text() == (full / "scores.csv").read_text()
    assert not list(part.glob("*.part-*"))


def test_two_process_training_equals_one_process_with_the_whole_batch(work, tmp_path):
    from adgan.registry import load_detector

    root, train = work
    assert main([*train, "--out", str(tmp_path / "one")]) == 0
    res = torchrun([*train, "--out", str(tmp_path / "two")])
    assert res.stdout.count("trained adgan") == 1
    one = load_detector(tmp_path / "one" / "detector.pt")
    two = load_detector(tmp_path / "two" / "detector.pt")
    for net in ("generator_", "critic_"):
        a, b = getattr(one, net).state_dict(), getattr(two, net).state_dict()
        for k in a:
            np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(one.offset_, two.offset_, rtol=1e-4)
    # rank 0 alone wrote the training files: one loss row per iteration
    assert len(_rows(tmp_path / "two" / "gan" / "losses.csv")) == 3


def test_two_process_benchmark_writes_each_row_once(work, tmp_path):
    root, _ = work
    out = tmp_path / "bench"
    args = ["benchmark", "--dataset", "digits", "--preset", str(root / "tiny.toml")]
    args += ["--classes", "0-2", "--methods", "adgan,mean-image", "--no-trajectories"]
    torchrun([*args, "--out", str(out), "--quiet"])
    rows = _rows(out / "results.csv")
    keys = sorted((r["normal_class"], r["method"]) for r in rows)
    assert keys == sorted((str(c), m) for c in range(3) for m in ("adgan", "mean-image"))
    assert (out / "table.md").exists()


def test_a_second_writer_on_one_output_stops_at_once(work, tmp_path, capsys):
    root, _ = work
    out = tmp_path / "bench"
    args = ["benchmark", "--dataset", "digits", "--preset", str(root / "tiny.toml")]
    args += ["--classes", "0", "--methods", "mean-image", "--out", str(out), "--quiet"]
    with exclusive(out / ".lock", str(out)):  # as a running benchmark holds it
        t = time.perf_counter()
        assert main(args) == 1
        assert time.perf_counter() - t < 10
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{out / '.lock'}: locked by another adgan process" in err
    assert not (out / "results.csv").exists()
    assert main(args) == 0  # the lock is gone with its holder
    json_out = tmp_path / "e.json"
    ev = ["evaluate", "--dataset", "digits", "--preset", str(root / "tiny.toml")]
    ev += ["--methods", "mean-image", "--out", str(json_out), "--quiet"]
    with exclusive(tmp_path / ".e.json.lock", str(json_out)):
        assert main(ev) == 1
    assert ".e.json.lock: locked" in capsys.readouterr().err
    for _ in range(2):  # two runs one after the other: both finish
        assert main(ev) == 0


def test_a_world_that_does_not_form_ends_with_a_message(work, tmp_path):
    root, _ = work
    port = _free_port()
    env = dict(_env(), WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    env.update(MASTER_PORT=str(port), ADGAN_RENDEZVOUS_TIMEOUT="3")
    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "adgan", *_rank_args(root, tmp_path / "o"), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and time.perf_counter() - t < 40
    err = res.stderr.strip()
    assert err.count("\n") == 0, err
    assert f"rendezvous 127.0.0.1:{port}" in err and "did not form" in err


def test_evaluate_refuses_torchrun(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["evaluate", "--dataset", "digits", "--methods", "mean-image"]) == 2
    assert "evaluate runs in one process" in capsys.readouterr().err
