"""The paper's baselines: classic detectors on PCA / AlexNet features, DCAE and VAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold
from sklearn.neighbors import KernelDensity
from sklearn.utils.estimator_checks import parametrize_with_checks

from adgan.detectors.autoencoder import DCAE, VAE
from adgan.detectors.classic import BANDWIDTHS, MODELS, ClassicDetector
from adgan.detectors.rbf_width import evangelista_gamma
from adgan.errors import CheckpointError, ConfigError
from adgan.nets.alexnet import AlexNet, conv_features, load_alexnet
from adgan.registry import load_detector

#: torchvision.models.alexnet().state_dict(): names and shapes, in order
TORCHVISION_ALEXNET = [
    ("features.0.weight", (64, 3, 11, 11)), ("features.0.bias", (64,)),
    ("features.3.weight", (192, 64, 5, 5)), ("features.3.bias", (192,)),
    ("features.6.weight", (384, 192, 3, 3)), ("features.6.bias", (384,)),
    ("features.8.weight", (256, 384, 3, 3)), ("features.8.bias", (256,)),
    ("features.10.weight", (256, 256, 3, 3)), ("features.10.bias", (256,)),
    ("classifier.1.weight", (4096, 9216)), ("classifier.1.bias", (4096,)),
    ("classifier.4.weight", (4096, 4096)), ("classifier.4.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
]  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run fastest on one thread, and OpenMP spins badly on busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def toy(n: int, anomalous: bool, seed: int, size: int = 8) -> np.ndarray:
    """Gray images in [-1, 1]: normals brighten the top half, anomalies the left half."""
    rng = np.random.default_rng(seed)
    X = rng.normal(-0.5, 0.1, (n, 1, size, size)).astype(np.float32)
    amp = rng.uniform(0.5, 1.0, (n, 1, 1)).astype(np.float32)
    if anomalous:
        X[:, 0, :, : size // 2] += amp
    else:
        X[:, 0, : size // 2, :] += amp
    return np.clip(X, -1, 1)


@pytest.fixture(scope="module")
def data():
    normal = toy(60, False, 0)
    test = np.concatenate([toy(20, False, 1), toy(20, True, 2)])
    is_anomaly = np.r_[np.zeros(20), np.ones(20)]
    return normal, test, is_anomaly


def classic(model: str, **kw) -> ClassicDetector:
    return ClassicDetector(model=model, pca_dims=(4, 8), n_folds=5, n_components_grid=(2, 3), **kw)


DETECTOR_CASES = {
    **{m: (lambda m=m: classic(m)) for m in MODELS},
    "iforest-alexnet": lambda: classic(
        "iforest", features="alexnet", alexnet_weights="random", alexnet_size=64, device="cpu"
    ),
    "dcae": lambda: DCAE(epochs=15, width=8, latent_dim=4, batch_size=16, device="cpu"),
    "vae": lambda: VAE(
        epochs=15, width=8, latent_dim=4, batch_size=16, n_elbo_samples=4, lr=1e-2, device="cpu"
    ),
}


@pytest.fixture(scope="module")
def fitted(data):
    normal = data[0]
    return {name: make().fit(normal) for name, make in DETECTOR_CASES.items()}


@pytest.mark.parametrize("name", list(DETECTOR_CASES))
def test_detects_toy_anomalies(name, fitted, data):
    det = fitted[name]
    _, test, is_anomaly = data
    scores = det.anomaly_score(test)
    assert scores.shape == (len(test),) and np.all(np.isfinite(scores))
    assert roc_auc_score(is_anomaly, scores) > 0.9
    assert set(np.unique(det.predict(test))) <= {-1, 1}
    np.testing.assert_array_equal(
        det.decision_function(test), det.score_samples(test) - det.offset_
    )
    # a sample's score does not depend on the batch it is scored in
    np.testing.assert_allclose(det.score_samples(test[:3]), det.score_samples(test)[:3], rtol=1e-6)


@pytest.mark.parametrize("name", list(DETECTOR_CASES))
def test_save_load_round_trip(name, fitted, data, tmp_path):
    det = fitted[name]
    test = data[1]
    path = det.save(tmp_path / "det.pt")
    back = load_detector(path)
    assert type(back) is type(det)
    assert back.get_params() == det.get_params()  # tuples restored from JSON lists
    assert back.offset_ == det.offset_
    np.testing.assert_array_equal(back.score_samples(test), det.score_samples(test))
    np.testing.assert_array_equal(back.predict(test), det.predict(test))


@pytest.mark.parametrize("name", list(DETECTOR_CASES))
def test_clone(name, fitted):
    det = fitted[name]
    twin = clone(det)
    assert twin.get_params() == det.get_params()
    assert not hasattr(twin, "offset_")


@pytest.mark.parametrize("cls", [DCAE, VAE])
def test_autoencoders_are_deterministic(cls, data, fitted):
    normal, test, _ = data
    again = DETECTOR_CASES[cls.__name__.lower()]().fit(normal)
    np.testing.assert_array_equal(
        again.score_samples(test), fitted[cls.__name__.lower()].score_samples(test)
    )


def test_vae_scores_are_elbos(fitted, data):
    det = fitted["vae"]
    net, eps = det.net_, det.eps_
    assert eps.shape == (4, 4)  # n_elbo_samples draws of a 4-d latent
    x = torch.from_numpy(data[1][:3])
    with torch.no_grad():
        mu, logvar = net.encode(x)
        sigma = net.log_std.exp()
        elbo = []
        for i in range(len(x)):
            loglik = []
            for e in eps:
                mean = net.decoder((mu[i] + (0.5 * logvar[i]).exp() * e)[None])[0]
                loglik.append(torch.distributions.Normal(mean, sigma).log_prob(x[i]).sum())
            kl = torch.distributions.kl_divergence(
                torch.distributions.Normal(mu[i], (0.5 * logvar[i]).exp()),
                torch.distributions.Normal(0.0, 1.0),
            ).sum()
            elbo.append(float(torch.stack(loglik).mean() - kl))
    np.testing.assert_allclose(det.score_samples(data[1][:3]), elbo, rtol=1e-4)


def test_gray_images_without_channel_axis(data):
    normal, test, is_anomaly = data
    det = classic("kde").fit(normal[:, 0])
    assert det.image_shape_ == (1, 8, 8)
    assert roc_auc_score(is_anomaly, det.anomaly_score(test[:, 0])) > 0.9


def test_kde_bandwidth_maximises_cross_validated_likelihood(fitted):
    det = fitted["kde"]
    assert det.bandwidth_ in BANDWIDTHS
    Z = det.train_features_
    folds = list(KFold(5, shuffle=True, random_state=0).split(Z))
    loglik = [
        np.mean([KernelDensity(bandwidth=h).fit(Z[tr]).score(Z[te]) for tr, te in folds])
        for h in BANDWIDTHS
    ]
    assert det.bandwidth_ == BANDWIDTHS[int(np.argmax(loglik))]


def test_evangelista_criterion_matches_a_plain_loop():
    Z = np.random.default_rng(3).normal(size=(12, 3))
    best, gammas, crit = evangelista_gamma(Z)
    assert best in gammas and best == gammas[np.argmax(crit)]
    for g, c in zip(gammas, crit, strict=True):
        k = [
            np.exp(-g * np.sum((Z[i] - Z[j]) ** 2)) for i in range(12) for j in range(12) if i != j
        ]
        assert c == pytest.approx(np.var(k) / (np.mean(k) + 1e-12), rel=1e-9, abs=1e-15)
    # the default grid brackets the median distance, and the optimum lies inside it
    assert 0 < np.argmax(crit) < len(gammas) - 1


def test_ocsvm_uses_the_criterion(fitted):
    det = fitted["ocsvm"]
    assert det.gamma_ == evangelista_gamma(det.train_features_)[0]
    assert det.model_.nu == 0.1


def test_gmm_components_by_bic(fitted):
    det = fitted["gmm"]
    assert det.n_components_ in (2, 3)
    assert det.model_.covariance_type == "full"


def test_gmm_fits_with_one_blas_thread(data, monkeypatch):
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_info

    seen = []
    fit = GaussianMixture.fit

    def spy(self, X, y=None):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return fit(self, X, y)

    monkeypatch.setattr(GaussianMixture, "fit", spy)
    classic("gmm").fit(data[0])
    assert seen == [{1}, {1}]


def test_pca_dimension_chosen_on_labelled_training_data(data):
    normal, test, _ = data
    X = np.concatenate([normal, toy(20, True, 5)])
    y = np.r_[np.ones(60), -np.ones(20)]
    det = ClassicDetector(model="kde", pca_dims=(2, 4, 8, 100), holdout=0.25, calibration=0)
    det.fit(X, y)
    # candidates clipped to min(n - 1, n_features) of the inliers left after the holdout
    assert set(det.pca_dim_scores_) == {2, 4, 8, 44}
    assert det.pca_dim_ == max(det.pca_dim_scores_, key=det.pca_dim_scores_.get)
    # the final model is fit (and calibrated) on the inliers of X alone
    assert len(det.calibration_scores_) == 60
    plain = ClassicDetector(model="kde", pca_dim_default=det.pca_dim_, calibration=0).fit(normal)
    np.testing.assert_array_equal(det.score_samples(test), plain.score_samples(test))


def test_pca_dimension_without_outlier_labels(data):
    normal = data[0]
    det = ClassicDetector(model="iforest", calibration=0).fit(normal, np.ones(len(normal)))
    assert det.pca_dim_ == 59 and not hasattr(det, "pca_dim_scores_")  # min(100, n - 1, 64)
    with pytest.warns(UserWarning, match="y is ignored"):
        ClassicDetector(model="iforest").fit(normal, np.arange(len(normal)) % 2)


def test_alexnet_parameter_names_are_torchvision_s():
    state = AlexNet().state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == TORCHVISION_ALEXNET


def test_alexnet_features(data):
    features = load_alexnet("random", seed=1).features
    again = load_alexnet("random", seed=1).features
    assert all(
        torch.equal(a, b) for a, b in zip(features.parameters(), again.parameters(), strict=True)
    )
    X = data[1][:2]
    assert conv_features(features, X, size=64).shape == (2, 256)
    assert conv_features(features, X, size=224).shape == (2, 256 * 6 * 6)
    rgb = np.repeat(X, 3, axis=1)
    np.testing.assert_allclose(
        conv_features(features, rgb, 64), conv_features(features, X, 64), rtol=1e-5, atol=1e-6
    )


def test_alexnet_methods_share_features_computed_once(data, monkeypatch):
    import adgan.nets.alexnet as alexnet_mod

    calls = []
    real = alexnet_mod.conv_features
    monkeypatch.setattr(
        alexnet_mod, "conv_features", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k)
    )
    alexnet_mod.FEATURE_CACHE.clear()
    kw = dict(features="alexnet", alexnet_weights="random", alexnet_size=64, device="cpu")
    X, test = data[0], data[1][:6]
    a = classic("kde", **kw).fit(X)
    sa = a.score_samples(test)
    b = classic("gmm", **kw).fit(X)
    assert calls == [len(X), len(test)]  # the second method reused both
    np.testing.assert_array_equal(b._features(test), real(b.alexnet_, test, 64).astype(np.float64))
    alexnet_mod.FEATURE_CACHE.clear()
    np.testing.assert_array_equal(classic("kde", **kw).fit(X).score_samples(test), sa)
    classic("kde", **{**kw, "random_state": 3}).fit(X)  # other weights: computed anew
    assert calls[-1] == len(X) and len(calls) == 5


def test_alexnet_weights_are_required(data, tmp_path):
    with pytest.raises(ConfigError, match="alexnet_weights.*torchvision") as err:
        ClassicDetector(features="alexnet").fit(data[0])
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        ClassicDetector(features="alexnet", alexnet_weights=str(tmp_path / "no.pth")).fit(data[0])
    state = AlexNet().state_dict()
    for bad in (
        {k.replace("features", "conv"): v for k, v in state.items()},
        state | {"features.0.weight": torch.zeros(64, 1, 11, 11)},
    ):
        torch.save(bad, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError, match="AlexNet") as err:
            ClassicDetector(features="alexnet", alexnet_weights=str(tmp_path / "bad.pth")).fit(
                data[0]
            )
        assert "\n" not in str(err.value)


def test_alexnet_weights_file_is_loaded(data, tmp_path):
    net = load_alexnet("random", seed=4)
    torch.save(net.state_dict(), tmp_path / "alexnet.pth")
    det = classic(
        "iforest",
        features="alexnet",
        alexnet_weights=str(tmp_path / "alexnet.pth"),
        alexnet_size=64,
        device="cpu",
        random_state=4,
    ).fit(data[0])
    ref = classic(
        "iforest",
        features="alexnet",
        alexnet_weights="random",
        alexnet_size=64,
        device="cpu",
        random_state=4,
    ).fit(data[0])
    np.testing.assert_array_equal(det.score_samples(data[1]), ref.score_samples(data[1]))


def test_invalid_settings():
    X = toy(10, False, 0)
    with pytest.raises(ConfigError, match="model"):
        ClassicDetector(model="lof").fit(X)
    with pytest.raises(ConfigError, match="features"):
        ClassicDetector(features="vgg").fit(X)


def test_feature_input_round_trip(tmp_path):
    """(n, d) arrays are features for features="pca", and stay so through save / load."""
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(50, 6)), rng.normal(size=(10, 6)) + 3
    det = classic("gmm").fit(X)
    assert det.input_kind == "features" and det.n_features_in_ == 6
    assert not hasattr(det, "image_shape_")
    assert roc_auc_score(np.r_[np.zeros(50), np.ones(10)], det.anomaly_score(np.r_[X, Y])) > 0.9
    back = load_detector(det.save(tmp_path / "gmm.pt"))
    assert back.input_kind == "features"
    np.testing.assert_array_equal(back.score_samples(Y), det.score_samples(Y))
    with pytest.raises(ValueError, match="features"):
        back.score_samples(Y[:, :5])


# scikit-learn's checks pass arbitrary y (0, 1, 2, ...), which fit ignores with a warning;
# they expect the threshold from the training items themselves (``contamination`` of them
# flagged): calibration=0, scikit-learn's way (the default holds 10% out)
@pytest.mark.filterwarnings("ignore:y. only labels:UserWarning")
@parametrize_with_checks(
    [ClassicDetector(model=m, n_folds=3, n_components_grid=(2, 3), calibration=0) for m in MODELS]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
