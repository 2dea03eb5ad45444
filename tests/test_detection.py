"""Detection itself: a detector fitted on one class of the embedded digits must rank held-out
digits of the other classes above held-out digits of its own class, well above chance and
above the distance-to-the-mean-image floor. Negating a detector's scores fails these tests."""

from __future__ import annotations

import pytest
from sklearn.metrics import roc_auc_score

from adgan.data import load_digits, one_vs_all
from adgan.registry import make_detector

# the smoke preset's networks at half width with a quarter of the seeds: ADGAN's AUC on
# this class was 0.993 with random_state 0 and 1 when these were set, the floor's 0.922
GAN = dict(objective="wgan-gp", width=32, latent_dim=32, iterations=800, n_seeds=16,
           steps=5, calibration=0.1, random_state=0, device="cpu")  # fmt: skip
NORMAL = 1  # the mean image is a poor model of the ones: a floor well below ADGAN


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory):
    """One GAN for both detectors: adgan-plus trains as ADGAN does and reuses it."""
    return str(tmp_path_factory.mktemp("gan"))


@pytest.fixture(scope="module")
def task():
    train, test = load_digits()
    return one_vs_all(train, test, NORMAL, n_test=5000, seed=0)


@pytest.fixture(scope="module")
def floor(task) -> float:
    det = make_detector("mean-image").fit(task.x_train)
    return roc_auc_score(task.y_test, det.anomaly_score(task.x_test))


@pytest.mark.parametrize(
    "method, extra",
    [("adgan", {}), ("adgan-plus", {"rotation_steps": 200})],
)
def test_detects_other_digits(task, floor, gan_dir, method, extra):
    det = make_detector(method, **GAN, **extra, work_dir=gan_dir).fit(task.x_train)
    auc = roc_auc_score(task.y_test, det.anomaly_score(task.x_test))
    assert auc >= 0.95, f"{method}: AUC {auc:.3f} on digits class {NORMAL}"
    assert auc >= floor + 0.03, f"{method}: AUC {auc:.3f}, mean-image floor {floor:.3f}"
    # the threshold from held-out normal images flags most anomalies and few normal images
    flagged = det.predict(task.x_test) == -1
    y = task.y_test.astype(bool)
    assert flagged[y].mean() > 0.5 and flagged[~y].mean() < 0.3


def test_floor_is_informative(task, floor):
    assert 0.85 < floor < 0.96  # the comparison above is not against a trivial floor
