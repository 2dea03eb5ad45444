"""The command's exit status: 0 success, 1 data / model / runtime failure, 2 usage."""

import subprocess
import sys

import pytest

from adgan.cli import EXIT_HELP, build_parser, main


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adgan.cli", *argv], capture_output=True, text=True, timeout=300
    )


def test_usage_and_data_errors_exit_differently(tmp_path, monkeypatch):
    monkeypatch.delenv("ADGAN_DATA", raising=False)
    typo = _run("evaluate", "--dataset", "digits", "--normal-klass", "3")
    assert typo.returncode == 2 and "--normal-klass" in typo.stderr
    missing = _run("evaluate", "--dataset", "mnist", "--data-root", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"adgan evaluate: error: --data-root: data folder {tmp_path / 'none'} does not exist"
    ]


def test_a_rejected_value_is_usage_and_a_damaged_model_is_a_failure(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "r")]) == 2
    assert "--normal-class" in capsys.readouterr().err
    bad = tmp_path / "detector.pt"
    bad.write_bytes(b"not a detector")
    argv = ["rank", "--model", str(bad), "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and len(err.splitlines()) == 1


def test_an_unwritable_output_is_a_failure(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "r.json"  # under a file: cannot be created
    argv = ["evaluate", "--dataset", "digits", "--methods", "mean-image", "--out", str(out)]
    assert main([*argv, "--quiet"]) == 1
    assert str(blocker) in capsys.readouterr().err


@pytest.mark.parametrize("command", [None, "evaluate", "train", "benchmark", "rank", "score"])
def test_every_help_states_the_exit_statuses(command, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([command, "--help"] if command else ["--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 success; 1 the data" in out and "2 usage" in out
    assert " ".join(EXIT_HELP.split()) in out
