"""adgan-plus's weighting of its parts (the reconstruction weight a preset may choose) and its
rotation network's shifts (``translation``)."""

import numpy as np
import pytest
import torch

from adgan import load_detector, selfsup
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


def test_shift_matches_a_plain_loop_with_reflected_borders():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(9, 2, 8, 12)).astype(np.float32))
    ix = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    iy = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    got = selfsup.shift(x, ix, iy).numpy()
    for i in range(len(x)):
        dx, dy = (0, 3, -3)[int(ix[i])], (0, 2, -2)[int(iy[i])]  # a quarter of 12 and of 8
        padded = np.pad(x[i].numpy(), ((0, 0), (2, 2), (3, 3)), mode="reflect")
        want = np.empty((2, 8, 12), np.float32)
        for r in range(8):
            for c in range(12):
                want[:, r, c] = padded[:, r - dy + 2, c - dx + 3]  # moved right dx, down dy
        np.testing.assert_array_equal(got[i], want)


def test_translation_score_sums_every_head_over_the_36_transformations(images, work):
    det = fit(images, work, translation=True, reconstruction_weight=0)
    net = det.rotation_net_
    assert net.head.out_features == 10
    x = torch.from_numpy(images[:4].astype(np.float32) / 127.5 - 1)
    want = np.zeros((len(x), 108))  # shift-major, then rotation, then head
    with torch.no_grad():
        for a in range(3):
            for b in range(3):
                for k in range(4):
                    for i in range(len(x)):
                        moved = selfsup.shift(x[i : i + 1], torch.tensor([a]), torch.tensor([b]))
                        logits = net(torch.rot90(moved, k, (2, 3)))[0]
                        for h, (part, target) in enumerate(
                            ((logits[:4], k), (logits[4:7], a), (logits[7:], b))
                        ):
                            col = ((a * 3 + b) * 4 + k) * 3 + h
                            want[i, col] = -float(torch.log_softmax(part, 0)[target])
    np.testing.assert_allclose(selfsup.transformation_losses(net, x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(selfsup.rotation_loss(net, x), want.sum(1), rtol=1e-5)


def test_translation_round_trips_and_needs_the_rotation_net(images, work, tmp_path):
    x = images[:5]
    det = fit(images, work, translation=True)
    back = load_detector(det.save(tmp_path / "shift.pt"))
    assert back.get_params()["translation"] is True
    np.testing.assert_array_equal(back.anomaly_score(x), det.anomaly_score(x))
    assert not np.allclose(det.anomaly_score(x), fit(images, work).anomaly_score(x))
    with pytest.raises(ConfigError, match="translation"):
        fit(images, work, translation=True, rotation=False)


def test_standardised_transformations_weigh_each_by_the_calibration_images(images, work, tmp_path):
    from adgan.base import as_images, split_calibration

    x = images[:7]
    det = fit(images, work, translation=True, standardise_transformations=True)
    net = det.rotation_net_
    _, cal = split_calibration(len(images), TINY["calibration"], 0)
    per_cal = selfsup.transformation_losses(net, torch.from_numpy(as_images(images[cal])))
    mean, std = det.transformations_
    np.testing.assert_allclose(mean, per_cal.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(std, np.maximum(per_cal.std(0), 1e-6), rtol=1e-6, atol=1e-9)
    # the rotation part: the standardised losses summed, then standardised as a whole
    per = selfsup.transformation_losses(net, torch.from_numpy(as_images(x)))
    z = ((per - per_cal.mean(0)) / np.maximum(per_cal.std(0), 1e-6)).sum(1)
    z_cal = ((per_cal - per_cal.mean(0)) / np.maximum(per_cal.std(0), 1e-6)).sum(1)
    want = (z - z_cal.mean()) / z_cal.std()
    np.testing.assert_allclose(det.score_parts(x)["rotation"], want, rtol=1e-5, atol=1e-6)
    plain = fit(images, work, translation=True).score_parts(x)["rotation"]
    assert not np.allclose(plain, want)
    back = load_detector(det.save(tmp_path / "z.pt"))
    np.testing.assert_array_equal(back.anomaly_score(x), det.anomaly_score(x))
    with pytest.raises(ConfigError, match="standardise_transformations"):
        fit(images, work, standardise_transformations=True, rotation=False)
