"""adgan-plus's weighting of its parts (the reconstruction weight a preset may choose)."""

import numpy as np
import pytest

from adgan import load_detector
from adgan.detectors import adgan_plus
from adgan.detectors.adgan_plus import ADGANPlus
from adgan.errors import ConfigError

TINY = dict(
    iterations=3,
    width=4,
    latent_dim=6,
    n_seeds=2,
    steps=2,
    batch_size=8,
    calibration=6,
    rotation_steps=3,
    rotation_batch=8,
    device="cpu",
)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gan"))  # one GAN for every detector below


def fit(images, work, **kw):
    return ADGANPlus(**TINY, work_dir=work, **kw).fit(images)


def test_the_weight_scales_the_reconstruction_part_alone(images, work):
    x = images[:7]
    one = fit(images, work).score_parts(x)
    det = fit(images, work, reconstruction_weight=2.5)
    parts = det.score_parts(x)
    np.testing.assert_allclose(parts["reconstruction"], 2.5 * one["reconstruction"], rtol=1e-9)
    np.testing.assert_allclose(parts["rotation"], one["rotation"], rtol=1e-9)
    np.testing.assert_allclose(parts["reconstruction"] + parts["rotation"], det.anomaly_score(x))


def test_weight_zero_scores_by_rotation_alone_without_a_search(images, work, monkeypatch):
    x = images[:7]
    rotation_only = fit(images, work).score_parts(x)["rotation"]

    def no_search(*args, **kwargs):
        raise AssertionError("the latent search ran with reconstruction_weight=0")

    monkeypatch.setattr(adgan_plus, "latent_search", no_search)
    det = fit(images, work, reconstruction_weight=0)
    assert list(det.score_parts(x)) == ["rotation"]
    np.testing.assert_allclose(det.anomaly_score(x), rotation_only, rtol=1e-9)


def test_weight_zero_round_trips_through_a_file(images, work, tmp_path):
    x = images[:5]
    det = fit(images, work, reconstruction_weight=0)
    back = load_detector(det.save(tmp_path / "plus.pt"))
    assert back.get_params()["reconstruction_weight"] == 0
    np.testing.assert_array_equal(back.anomaly_score(x), det.anomaly_score(x))


def test_no_part_left_is_refused(images, work):
    with pytest.raises(ConfigError, match="reconstruction_weight"):
        fit(images, work, rotation=False, reconstruction_weight=0)
    with pytest.raises(ConfigError, match="reconstruction_weight"):
        ADGANPlus(**TINY, reconstruction_weight=-1).fit(images)
