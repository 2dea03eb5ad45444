"""The library as a notebook user meets it: top-level imports, figures that leave matplotlib's
backend alone, helpers that restore the caller's settings, and the quick-start example."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import adgan
from adgan.benchmark.figures import plot_gallery, plot_roc, plot_trajectories
from adgan.plots import plot_images
from adgan.registry import DETECTORS
from adgan.torch_utils import flush_denormals, flush_denormals_enabled

EXAMPLE = Path(__file__).parents[1] / "examples" / "quickstart.py"


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_registered_detector_is_importable_from_the_package(name):
    cls, defaults = DETECTORS[name]
    assert getattr(adgan, cls.__name__) is cls and cls.__name__ in adgan.__all__
    assert adgan.make_detector(name).get_params()["contamination"] == 0.05


def test_importing_the_figures_leaves_the_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "import adgan.benchmark.figures, adgan.plots; print(matplotlib.get_backend())"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "svg"


def test_figures_are_returned_and_written_only_when_a_path_is_given(tmp_path):
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    curves = {"adgan": [(y, y + rng.random(40))], "mean-image": [(y, rng.random(40))]}
    fig = plot_roc(curves, {"adgan": 0.9}, "t")
    assert isinstance(fig, Figure) and not list(tmp_path.iterdir())
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "adgan (0.900)",
        "mean-image",
    ]
    images = rng.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8)
    fig = plot_gallery(images, rng.random(30), n=8, nrow=4, path=tmp_path / "g.png")
    assert isinstance(fig, Figure) and (tmp_path / "g.png").stat().st_size > 0
    from PIL import Image

    with Image.open(tmp_path / "g.png") as pic:  # the grid's pixels, each image twice its size
        assert pic.size == tuple(int(v) for v in fig.get_size_inches() * fig.dpi)
        assert pic.size == (2 * (4 * 10 + 2), 2 * (5 * 10 + 2))  # 4 a row; 2 + blank + 2 rows
    assert isinstance(plot_images(images[:4]), Figure)
    z = rng.normal(size=(3, 6, 2, 2))
    fig = plot_trajectories(z, rng.random((3, 6, 2)), np.arange(6) % 2 == 0, path=tmp_path / "t")
    assert len(fig.axes) == 3 and (tmp_path / "t").exists()


@pytest.mark.parametrize("caller", [False, True])
def test_flush_denormals_restores_the_callers_setting(caller):
    torch.set_flush_denormal(caller)
    try:
        assert flush_denormals_enabled() is caller
        with flush_denormals():
            assert flush_denormals_enabled()
            with flush_denormals():
                pass
            assert flush_denormals_enabled()  # an inner block restores the outer one's
        assert flush_denormals_enabled() is caller
        adgan.MeanImage().fit(np.zeros((4, 1, 8, 8), np.float32))  # fit runs inside one
        assert flush_denormals_enabled() is caller
    finally:
        torch.set_flush_denormal(False)


def test_the_quickstart_example_runs(tmp_path):
    figure = tmp_path / "gallery.png"
    argv = ["--iterations", "5", "--n-seeds", "4", "--n-test", "60", "--figure", str(figure)]
    res = subprocess.run(
        [sys.executable, str(EXAMPLE), *argv], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("normal digit 1: 121 training images; 60 test images")
    assert lines[1].startswith("ADGAN      ROC-AUC ") and lines[2].startswith("mean-image ROC-AUC")
    assert figure.stat().st_size > 0


def test_the_threshold_flags_the_contamination_fraction_of_the_calibration_images():
    X = np.random.default_rng(1).uniform(-1, 1, size=(200, 1, 8, 8)).astype(np.float32)
    det = adgan.MeanImage(contamination=0.1, calibration=50).fit(X)
    assert len(det.calibration_scores_) == 50  # held out of the mean
    assert np.mean(det.calibration_scores_ < det.offset_) == pytest.approx(0.1, abs=0.02)
    scores = det.anomaly_score(X)
    np.testing.assert_array_equal(det.predict(X) == -1, scores > -det.offset_)
    det = adgan.MeanImage(contamination=0.1, calibration=0).fit(X)  # the training images
    assert len(det.calibration_scores_) == 200
    assert np.mean(det.predict(X) == -1) == pytest.approx(0.1, abs=0.01)


def test_the_documented_calibration_defaults():
    from adgan.registry import detector_params

    for name in DETECTORS:
        assert detector_params(name)["calibration"] == 0.1, name


@pytest.mark.parametrize("name", ["kde", "gmm", "ocsvm", "iforest"])
def test_the_default_threshold_flags_about_contamination_of_new_normal_images(name):
    # scikit-learn's digits: fitted on digit 1's training images, the share of digit 1's
    # test images flagged stays near contamination (0.05); calibrated on the training
    # images themselves (calibration=0), a kernel density flagged all of them
    from adgan.data import load_digits
    from adgan.registry import make_detector

    train, test = load_digits()
    det = make_detector(name, random_state=0).fit(train.images[train.labels == 1])
    flagged = np.mean(det.predict(test.images[test.labels == 1]) == -1)
    assert flagged <= 0.2, flagged
