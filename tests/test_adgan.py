"""The ADGAN estimator: the detector contract, reproducibility, persistence, bad input."""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from adgan import ADGAN, load_detector
from adgan.errors import CheckpointError, ConfigError, DataError
from adgan.nets.dcgan import DCGANConfig
from adgan.training import TrainConfig, TrainingDiverged, load_gan, train_wgan

TINY = dict(
    iterations=4,
    width=4,
    latent_dim=6,
    n_seeds=3,
    steps=2,
    batch_size=8,
    calibration=4,
    device="cpu",
)


def _images(n=24, seed=0, size=8):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, 1, size, size)).astype(np.uint8)
    x[:, :, 2:6, 3:5] = 230  # a bar: the normal pattern
    return x


def test_contract_fit_returns_self_and_conventions_hold():
    X = _images()
    det = ADGAN(**TINY)
    assert det.fit(X) is det
    s = det.score_samples(X[:5])
    np.testing.assert_allclose(det.anomaly_score(X[:5]), -s)
    np.testing.assert_allclose(det.decision_function(X[:5]), s - det.offset_)
    assert set(det.predict(X[:5])) <= {1, -1}
    assert len(det.calibration_scores_) == 4  # threshold from held-out normal images only


def test_same_seed_same_scores_and_other_seed_differs():
    X = _images()
    a = ADGAN(**TINY, random_state=3).fit(X).anomaly_score(X[:4])
    b = ADGAN(**TINY, random_state=3).fit(X).anomaly_score(X[:4])
    c = ADGAN(**TINY, random_state=4).fit(X).anomaly_score(X[:4])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_clone_and_save_load_round_trip(tmp_path):
    X = _images()
    det = ADGAN(**TINY).fit(X)
    c = clone(det)
    assert c.get_params() == det.get_params() and not hasattr(c, "offset_")
    path = det.save(tmp_path / "det.pt")
    back = load_detector(path)
    np.testing.assert_array_equal(back.anomaly_score(X[:4]), det.anomaly_score(X[:4]))
    assert back.offset_ == det.offset_


def test_fit_resumes_in_work_dir(tmp_path):
    X = _images()
    full = ADGAN(**{**TINY, "iterations": 6}, work_dir=str(tmp_path / "a")).fit(X)
    ADGAN(**{**TINY, "iterations": 3}, work_dir=str(tmp_path / "b")).fit(X)
    resumed = ADGAN(**{**TINY, "iterations": 6}, work_dir=str(tmp_path / "b")).fit(X)
    for k, v in full.generator_.state_dict().items():
        torch.testing.assert_close(resumed.generator_.state_dict()[k], v)
    assert (tmp_path / "b" / "samples.png").exists()
    rows = (tmp_path / "b" / "losses.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6


def test_wrong_channel_count_and_shape_are_clear_errors():
    det = ADGAN(**TINY).fit(_images())
    with pytest.raises(DataError, match="3 channels|shape"):
        det.score_samples(np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(DataError, match="1 or 3 channels"):
        ADGAN(**TINY).fit(np.zeros((5, 2, 8, 8), np.uint8))


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    X = torch.from_numpy(_images().astype(np.float32) / 127.5 - 1)
    arch = DCGANConfig(image_size=8, channels=1, latent_dim=6, width=4)
    train_wgan(X, arch, TrainConfig(iterations=1, batch_size=4), out_dir=tmp_path)
    gen, critic, blob = load_gan(tmp_path / "checkpoint.pt")
    assert gen.config == arch
    other = DCGANConfig(image_size=8, channels=1, latent_dim=6, width=8)
    with pytest.raises(CheckpointError, match="architecture"):
        train_wgan(X, other, TrainConfig(iterations=2, batch_size=4), out_dir=tmp_path)


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    bad = tmp_path / "detector.pt"
    bad.write_bytes(b"not a checkpoint")
    # a file of another format is named as such, not as one that could run code
    with pytest.raises(CheckpointError, match="detector.pt: .*not in torch.save's format") as err:
        load_detector(bad)
    assert "run code" not in str(err.value)
    for data, needle in [(b"hi\n", "not in torch.save's format"), (b"", "an empty file")]:
        bad.write_bytes(data)  # torch raises KeyError('105') and EOFError('') for these
        with pytest.raises(
            CheckpointError, match=f"detector.pt: not a readable adgan detector: {needle}"
        ):
            load_detector(bad)
    whole = tmp_path / "whole.pt"
    torch.save({"format": "adgan-detector", "w": torch.zeros(50)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"cut.pt: .*damaged or truncated \(\w") as err:
        load_detector(cut)
    assert "\n" not in str(err.value) and str(err.value).endswith(")")
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "missing.pt")


def test_divergence_is_detected():
    X = torch.from_numpy(_images().astype(np.float32) / 127.5 - 1)
    arch = DCGANConfig(image_size=8, channels=1, latent_dim=6, width=4)
    with pytest.raises(TrainingDiverged, match="diverged at generator iteration 1"):
        train_wgan(X, arch, TrainConfig(iterations=3, batch_size=4, diverge_threshold=1e-12))


def test_resume_refuses_other_data_and_fewer_iterations(tmp_path):
    X = _images()
    ADGAN(**{**TINY, "iterations": 3}, work_dir=str(tmp_path)).fit(X)
    with pytest.raises(CheckpointError, match="other images"):
        ADGAN(**{**TINY, "iterations": 3}, work_dir=str(tmp_path)).fit(_images(seed=1))
    with pytest.raises(CheckpointError, match="more than the 2 asked for"):
        ADGAN(**{**TINY, "iterations": 2}, work_dir=str(tmp_path)).fit(X)


def test_load_overrides_parameters_before_restoring(tmp_path):
    det = ADGAN(**TINY).fit(_images())
    back = load_detector(det.save(tmp_path / "d.pt"), device="cpu", verbose=True)
    assert back.verbose is True and back.device == "cpu"


def test_bad_contamination_is_refused_before_training():
    with pytest.raises(ConfigError, match="contamination"):
        ADGAN(**TINY, contamination=1.5).fit(_images())


def test_one_search_gives_adgans_and_the_prior_scores(tmp_path):
    from adgan.detectors.adgan import PriorLikelihood

    X = _images()
    det = ADGAN(**TINY, work_dir=str(tmp_path)).fit(X)
    prior = PriorLikelihood(**TINY, work_dir=str(tmp_path)).fit(X)  # the same GAN, reused
    both = det.search_scores(X[:5])
    fresh = det.search(X[:5])
    np.testing.assert_array_equal(both.log_prior, fresh.prior_log_density())
    np.testing.assert_array_equal(both.loss, fresh.loss)
    np.testing.assert_array_equal(det.score_samples_from(both), det.score_samples(X[:5]))
    np.testing.assert_array_equal(prior.score_samples_from(both), prior.score_samples(X[:5]))
    # a prior score fitted from ADGAN's fit equals one fitted on its own
    shared = PriorLikelihood(**TINY, work_dir=str(tmp_path), contamination=0.2)
    assert shared.shares_search_with(det)
    shared.fit_from(det)
    alone = PriorLikelihood(**TINY, contamination=0.2).fit(X)
    np.testing.assert_array_equal(shared.calibration_scores_, alone.calibration_scores_)
    assert shared.offset_ == alone.offset_
    np.testing.assert_array_equal(shared.score_samples(X[:5]), alone.score_samples(X[:5]))
    # other seeds or other settings do not share a search
    assert not PriorLikelihood(**{**TINY, "steps": 1}).shares_search_with(det)
    assert not PriorLikelihood(**TINY, random_state=5).shares_search_with(det)
    with pytest.raises(ConfigError, match="other settings"):
        PriorLikelihood(**{**TINY, "steps": 1}).fit_from(det)
    other = ADGAN(**TINY, random_state=5).fit(X)
    assert not np.array_equal(other.score_samples(X[:5]), det.score_samples(X[:5]))


def test_evaluate_reads_the_prior_score_from_adgans_search(tmp_path, monkeypatch):
    import adgan.detectors.adgan as mod
    from adgan.data import load_digits
    from adgan.detectors.adgan import PriorLikelihood
    from adgan.evaluate import evaluate_class
    from adgan.presets import Preset

    calls, real = [], mod.latent_search
    monkeypatch.setattr(mod, "latent_search", lambda *a, **k: calls.append(1) or real(*a, **k))
    train, test = load_digits()
    keep = {}
    recs = list(
        evaluate_class(
            train, test, "digits", 1, ["adgan", "prior"], Preset(name="tiny", params=TINY),
            n_test=40, work_dir=tmp_path, keep=keep,
        )
    )  # fmt: skip
    assert [r["method"] for r in recs] == ["adgan", "prior"]
    assert len(calls) == 2  # the calibration images and the test images, once each
    _, task, prior_scores, _ = keep["prior"]
    alone = PriorLikelihood(**TINY).fit(task.x_train)
    np.testing.assert_array_equal(prior_scores, alone.anomaly_score(task.x_test))
    np.testing.assert_array_equal(keep["prior"][0].offset_, alone.offset_)
    np.testing.assert_array_equal(
        keep["adgan"][2], ADGAN(**TINY).fit(task.x_train).anomaly_score(task.x_test)
    )
