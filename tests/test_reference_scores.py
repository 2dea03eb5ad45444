"""Scores of every registered detector on fixed tiny data against values recorded before
a refactor (tests/data/reference_scores.json, from tests/make_reference_scores.py), and
files written by that version (a GAN work folder, saved detectors) read by this one."""

import json
import shutil

import numpy as np
import pytest
from make_reference_scores import CASES, LEGACY, REFERENCE, SAVED, compute, data, fit, params

from adgan import load_detector
from adgan.registry import DETECTORS, make_detector

REF = json.loads(REFERENCE.read_text())["scores"]
# float32 paths: rounding only (the number of threads may change a sum's order)
TOL = dict(rtol=1e-5, atol=1e-6)
# adgan-plus sums standardised scores of order 10 whose sum can cancel to near 0: its
# rounding is absolute at that scale
CASE_TOL = {"adgan-plus": dict(rtol=1e-5, atol=2e-5)}


def test_every_registered_detector_has_a_reference():
    assert {CASES[c][0] for c in REF} == set(DETECTORS)
    assert set(REF) == set(CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_scores_equal_the_recorded_ones(case):
    got = compute([case])[case]
    tol = CASE_TOL.get(case, TOL)
    np.testing.assert_allclose(got["anomaly_score"], REF[case]["anomaly_score"], **tol)
    np.testing.assert_allclose(got["offset"], REF[case]["offset"], **tol)


@pytest.mark.parametrize("case", SAVED)
def test_detector_files_of_the_recorded_version_load_and_score_the_same(case):
    det = load_detector(LEGACY / f"{case}.pt")
    np.testing.assert_allclose(det.anomaly_score(data()[3]), REF[case]["anomaly_score"], **TOL)
    np.testing.assert_allclose(det.offset_, REF[case]["offset"], **TOL)


def test_a_finished_gan_work_folder_of_the_recorded_version_is_reused(tmp_path):
    work = tmp_path / "gan"
    shutil.copytree(LEGACY / "gan", work)
    log_before = (work / "losses.csv").read_text()
    det = fit("adgan", work_dir=str(work))
    assert (work / "losses.csv").read_text() == log_before  # nothing trained again
    np.testing.assert_allclose(det.anomaly_score(data()[3]), REF["adgan"]["anomaly_score"], **TOL)


def test_a_gan_work_folder_of_the_recorded_version_resumes(tmp_path):
    work = tmp_path / "gan"
    shutil.copytree(LEGACY / "gan", work)
    name, p, _ = params("adgan", work_dir=str(work))
    make_detector(name, **{**p, "iterations": 6}).fit(data()[0])
    rows = (work / "losses.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6
