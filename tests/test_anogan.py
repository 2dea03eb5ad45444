"""AnoGAN: the batched latent search against a plain per-image loop, and the choice of its
number of steps on a labelled holdout of training images."""

import numpy as np
import pytest
import torch

from adgan import load_detector
from adgan.detectors.anogan import AnoGAN
from adgan.errors import ConfigError
from adgan.evaluate import evaluate_class
from adgan.presets import Preset

TINY = dict(
    iterations=4,
    width=4,
    latent_dim=6,
    batch_size=8,
    calibration=6,
    device="cpu",
    anogan_lr=0.05,
)


def _images(n, seed, bar=True):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, 1, 8, 8)).astype(np.uint8)
    if bar:
        x[:, :, 2:6, 3:5] = 230  # the normal pattern
    else:
        x[:, :, 3:5, 1:7] = 230  # a crossing bar: anomalous
    return x


@pytest.fixture(scope="module")
def labelled():
    X = np.concatenate([_images(30, 0), _images(10, 1, bar=False)])
    y = np.r_[np.ones(30, int), -np.ones(10, int)]
    return X, y


@pytest.fixture(scope="module")
def chosen(labelled):
    X, y = labelled
    return AnoGAN(**TINY, anogan_steps=(0, 3, 7)).fit(X, y)


def _loop_scores(det, X, steps):
    """One image at a time, its own z and its own torch.optim.Adam: the definition."""
    gen, critic = det.generator_.eval(), det.critic_.eval()
    lam, out = det.anogan_lambda, []
    for img in torch.from_numpy(X):
        x = img[None]
        z = det.z0_[:1].clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=det.anogan_lr)
        fx = critic.features(x).detach()
        for step in range(steps + 1):
            gz = gen(z)
            loss = (1 - lam) * (x - gz).abs().sum() + lam * (fx - critic.features(gz)).abs().sum()
            if step == steps:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        out.append(-loss.item())
    return np.array(out)


def test_batched_search_matches_a_plain_loop(chosen, labelled):
    X = labelled[0][[0, 5, 33, 38]]
    Xv = chosen._validate(X, reset=False)
    for steps in (0, 3, 7):
        got = chosen._search(Xv, [steps])[steps]
        np.testing.assert_allclose(got, _loop_scores(chosen, Xv, steps), rtol=1e-5, atol=1e-5)


def test_loss_read_on_the_way_equals_a_run_stopped_there(chosen, labelled):
    Xv = chosen._validate(labelled[0][:12], reset=False)
    chosen.anogan_batch = 5  # several batches
    try:
        on_the_way = chosen._search(Xv, [0, 3, 7])
        for s in (0, 3, 7):
            np.testing.assert_array_equal(on_the_way[s], chosen._search(Xv, [s])[s])
    finally:
        chosen.anogan_batch = 512


def test_steps_chosen_on_the_labelled_holdout(chosen, labelled):
    assert set(chosen.anogan_step_scores_) == {0, 3, 7}
    best = max(chosen.anogan_step_scores_.values())
    # the fewest steps among the best
    assert chosen.anogan_steps_ == min(
        s for s, a in chosen.anogan_step_scores_.items() if a == best
    )
    X = labelled[0][:5]
    Xv = chosen._validate(X, reset=False)
    np.testing.assert_array_equal(
        chosen.score_samples(X), chosen._search(Xv, [chosen.anogan_steps_])[chosen.anogan_steps_]
    )
    assert len(chosen.calibration_scores_) == 6  # held-out normal images only


def test_choice_follows_the_holdout_auc(labelled, monkeypatch):
    X, y = labelled
    n_cal = TINY["calibration"]

    def fake(self, Xs, steps):  # step 3 separates normal from anomalous; 0 and 7 invert it
        sign = {0: -1.0, 3: 1.0, 7: -1.0}
        base = np.r_[np.ones(n_cal), np.zeros(len(Xs) - n_cal)]
        return {s: sign[s] * base for s in steps}

    monkeypatch.setattr(AnoGAN, "_search", fake)
    det = AnoGAN(**TINY, anogan_steps=[7, 0, 3]).fit(X, y)
    assert det.anogan_steps_ == 3 and det.anogan_step_scores_ == {0: 0.0, 3: 1.0, 7: 0.0}

    def tie(self, Xs, steps):
        base = np.r_[np.ones(n_cal), np.zeros(len(Xs) - n_cal)]
        return {s: base for s in steps}

    monkeypatch.setattr(AnoGAN, "_search", tie)
    assert AnoGAN(**TINY, anogan_steps=[7, 3]).fit(X, y).anogan_steps_ == 3


def test_without_anomalous_labels_the_largest_candidate(labelled):
    X, y = labelled
    det = AnoGAN(**TINY, anogan_steps=(2, 4)).fit(X[y == 1])
    assert det.anogan_steps_ == 4 and not hasattr(det, "anogan_step_scores_")
    # labels of normal images only: nothing to choose on
    det2 = AnoGAN(**TINY, anogan_steps=(2, 4)).fit(X[y == 1], y[y == 1])
    assert det2.anogan_steps_ == 4
    np.testing.assert_array_equal(det.score_samples(X[:3]), det2.score_samples(X[:3]))


def test_labels_train_the_gan_on_normal_images_only(labelled, tmp_path):
    X, y = labelled
    a = AnoGAN(**TINY, anogan_steps=2).fit(X, y)
    b = AnoGAN(**TINY, anogan_steps=2).fit(X[y == 1])
    for p, q in zip(a.generator_.parameters(), b.generator_.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_bad_settings_are_clear_errors(labelled):
    X, y = labelled
    for bad in (-1, 2.5, (), ("a",), True):
        with pytest.raises(ConfigError, match="anogan_steps"):
            AnoGAN(**TINY, anogan_steps=bad).fit(X)
    for bad in (0, 2.0, None):
        with pytest.raises(ConfigError, match="anogan_holdout_max"):
            AnoGAN(**TINY, anogan_holdout_max=bad).fit(X, y)
    with pytest.raises(ConfigError, match="calibration"):
        AnoGAN(**{**TINY, "calibration": 0}, anogan_steps=(1, 2)).fit(X, y)


def test_save_load_keeps_the_chosen_steps(chosen, labelled, tmp_path):
    back = load_detector(chosen.save(tmp_path / "anogan.pt"))
    assert back.anogan_steps_ == chosen.anogan_steps_
    assert back.anogan_step_scores_ == chosen.anogan_step_scores_
    X = labelled[0][:4]
    np.testing.assert_array_equal(back.score_samples(X), chosen.score_samples(X))


def test_evaluate_chooses_steps_on_training_images_only(tmp_path):
    from adgan.data import load_digits

    train, test = load_digits()
    preset = Preset(name="tiny", params=TINY, method={"anogan": {"anogan_steps": [0, 2]}})
    keep = {}
    recs = list(
        evaluate_class(
            train, test, "digits", 3, ["anogan"], preset, n_test=60, work_dir=tmp_path, keep=keep
        )
    )
    det, task, *_ = keep["anogan"]
    assert set(det.anogan_step_scores_) == {0, 2} and det.anogan_steps_ in (0, 2)
    assert 0.0 <= recs[0]["auc"] <= 1.0
