"""The classic baselines of Section 4.2: KDE, OC-SVM, Isolation Forest and a GMM, each on
PCA features of the pixels or of an ImageNet AlexNet's last convolutional layer."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from adgan.base import BaseDetector, resolve_device
from adgan.detectors.rbf_width import evangelista_gamma
from adgan.errors import CheckpointError, ConfigError, DataError
from adgan.files import load_state
from adgan.params import (
    CALIBRATION,
    CONTAMINATION,
    COUNT,
    DEVICE,
    Either,
    Float,
    Int,
    Options,
    PathName,
    Real,
    Seq,
    Text,
    optional,
)

log = logging.getLogger(__name__)

MODELS = ("kde", "ocsvm", "iforest", "gmm")
FEATURES = ("pca", "alexnet")
#: the paper's KDE bandwidth grid {2^0, 2^0.5, ..., 2^4}
BANDWIDTHS = tuple(float(2.0 ** (k / 2)) for k in range(9))


def _ndim(X: Any) -> int:
    if hasattr(X, "ndim"):  # arrays, tensors, sparse matrices, data frames
        return int(X.ndim)
    try:
        return int(np.asarray(X).ndim)
    except (TypeError, ValueError):  # ragged lists and the like: validate_data reports them
        return 2


class ClassicDetector(BaseDetector):
    """KDE, OC-SVM, Isolation Forest or GMM on PCA features (Section 4.2 of the paper).

    Images are flattened (``features="pca"``) or passed through an ImageNet AlexNet's
    convolutional stack (``features="alexnet"``), projected by PCA, and scaled by one number
    so that the retained components have unit variance on average (below); the model is fit
    on the result. ``features="pca"`` also takes (n, d) feature arrays.

    Methods, with the paper's settings as defaults:

    * ``"kde"``: Gaussian kernel; bandwidth h in ``bandwidths`` (2^0, 2^0.5, ..., 2^4) by
      maximum likelihood over ``n_folds``-fold (10) cross-validation. score_samples = log
      density.
    * ``"ocsvm"``: RBF kernel, ``nu=0.1``; gamma by Evangelista et al.'s criterion
      (:func:`evangelista_gamma`, the paper's "automated tuning" [16]). score_samples =
      the SVM's ``score_samples``.
    * ``"iforest"``: scikit-learn's defaults (100 trees, 256 samples each). score_samples =
      the forest's ``score_samples``, the negative of Liu et al.'s anomaly score.
    * ``"gmm"``: number of components in ``n_components_grid`` (2, ..., 20) by BIC, full
      covariances regularised by ``reg_covar``. score_samples = log-likelihood. The
      costliest: 19 full-covariance fits in 100 dimensions take minutes on a few
      thousand images (``covariance_type="diag"`` is far cheaper, but not the paper's).

    Feature scaling: a single factor for all retained components, the square root of their
    mean variance. It keeps PCA's Euclidean geometry (directions of small variance are not
    blown up, as whitening would), and makes the fixed KDE bandwidth grid mean the same on
    any dataset: squared distances between points are then about 2 * pca_dim on average.
    The OC-SVM's gamma grid adapts to the scale anyway; the Isolation Forest and the
    full-covariance GMM are invariant to it.

    PCA dimension: candidates ``pca_dims`` (20, 40, ..., 100), each clipped to
    min(n_samples - 1, n_features) of the data it is fit on (centred data has no more
    non-zero components). ``fit(X, y)`` with labels y (1: inlier, -1: outlier, as
    ``predict`` returns them) holds a stratified fraction ``holdout`` of X out (seeded),
    fits each candidate on the remaining inliers, keeps the one of best holdout ROC-AUC
    (the smallest on ties) and refits on all inliers of X; the remaining outliers of X are
    not used. Only the training data passed to ``fit`` is seen: draw X from the training
    split. ``fit(X)`` (or y of inliers only) uses ``pca_dim_default``, by default the
    largest candidate. y of other values is ignored with a warning, as scikit-learn
    outlier detectors ignore y.

    AlexNet features: the output of ``features`` (after features.10's ReLU *and* the final
    3x3/2 max-pool: 256 x 6 x 6 = 9216 values at 224 px). The paper says "the final
    convolutional layer"; the pooled map is that layer's activation as torchvision exposes
    it (``model.features``), the input of the classifier, and 4.7 times smaller than the
    13 x 13 map, which keeps PCA on thousands of images affordable. Preprocessing: [-1, 1]
    -> [0, 1], gray -> RGB, bilinear resize to ``alexnet_size``, ImageNet mean/std.

    Saving: the state holds the PCA (mean, components, scale), the projected training
    features and the chosen hyperparameters (h, gamma, number of components); loading
    refits KDE, OC-SVM and Isolation Forest deterministically on those features (same
    ``random_state``) rather than pickling scikit-learn objects, and restores the GMM's
    parameters directly. A check of a few training scores warns if a different
    scikit-learn version refits differently. The AlexNet convolution weights (~10 MB) are
    stored too, so loading does not need the weights file.

    Parameters
    ----------
    model : {"kde", "ocsvm", "iforest", "gmm"}
    features : {"pca", "alexnet"}
    pca_dims : tuple of int
        Candidate PCA dimensions.
    pca_dim_default : int or None
        Dimension used without labels; None: ``max(pca_dims)`` (clipped as above).
    holdout : float
        Fraction of the labelled X held out to choose the PCA dimension.
    bandwidths : tuple of float
        KDE bandwidth grid.
    n_folds : int
        KDE cross-validation folds (at most n_samples).
    nu : float
        OC-SVM nu.
    gamma_grid : tuple of float or None
        OC-SVM gamma candidates; None: the data-scaled grid of :func:`evangelista_gamma`.
    kernel_max_samples : int
        Rows used for the gamma criterion's kernel matrix.
    n_components_grid : tuple of int
        GMM component counts (those above n_samples are skipped).
    covariance_type : {"full", "tied", "diag", "spherical"}
        GMM covariance; "full" is the plain GMM, "diag" a cheaper alternative.
    reg_covar : float
        Added to the GMM covariances' diagonals (features have unit mean variance).
    alexnet_weights : str or None
        torchvision AlexNet state dict file (see ``adgan.nets.alexnet``), required for
        ``features="alexnet"``. ``"random"``: seeded random weights, for tests only.
    alexnet_size : int
        Side the images are resized to for AlexNet (224 as in ImageNet; >= 63).
    batch_size : int
        AlexNet batch size.
    device : str
        AlexNet device: "auto", "cpu" or "cuda[:N]".
    contamination : float
        Fraction of the calibration images flagged as anomalous (default 0.05): ``offset_``
        is this quantile of their ``score_samples``, so that fraction falls below it (their
        anomaly score above ``-offset_``; ``predict`` gives -1).
    calibration : float or int
        Fraction or number of the (inlier) training images held out to set the threshold
        (default 0.1); 0 uses the training images, as scikit-learn's outlier detectors do,
        which these models score above new normal images (a kernel density on its own
        points most of all), so that far more than ``contamination`` of normal images would
        be flagged.
    random_state : int or None
        Seeds the holdout, calibration split, CV folds, Isolation Forest, GMM, kernel
        subsample and random AlexNet weights.

    Attributes
    ----------
    pca_dim_ : int
        The PCA dimension used.
    pca_dim_scores_ : dict
        Holdout ROC-AUC of each candidate dimension; only after ``fit(X, y)`` with labels.
    pca_mean_, pca_components_ : ndarray
        The PCA.
    feature_scale_ : float
        The features are divided by this after projection.
    train_features_ : ndarray (n, pca_dim_)
        The projected training features.
    model_ : the fitted scikit-learn estimator.
    bandwidth_ : float (kde), gamma_ : float (ocsvm), n_components_ : int (gmm)
        The tuned hyperparameter.
    alexnet_ : torch.nn.Module
        AlexNet's convolutional stack (``features="alexnet"``).
    offset_ : float
        Threshold on score_samples.
    image_shape_ : tuple, or n_features_in_ : int
        Shape of one input item, for images or for (n, d) features.

    References
    ----------
    L. Deecke et al. Image Anomaly Detection with Generative Adversarial Networks.
    ECML-PKDD 2018, Section 4.2.
    E. Parzen. On estimation of a probability density function and mode. 1962 (KDE).
    B. Schoelkopf et al. Estimating the support of a high-dimensional distribution.
    Neural Computation 2001 (OC-SVM).
    P. F. Evangelista, M. J. Embrechts, B. K. Szymanski. Some properties of the Gaussian
    kernel for one class learning. ICANN 2007.
    F. T. Liu, K. M. Ting, Z.-H. Zhou. Isolation forest. ICDM 2008.
    A. Krizhevsky, I. Sutskever, G. Hinton. ImageNet classification with deep
    convolutional neural networks. NIPS 2012 (AlexNet).

    Examples
    --------
    >>> import numpy as np
    >>> from adgan.detectors.classic import ClassicDetector
    >>> X = np.random.default_rng(0).normal(0, 0.1, (40, 1, 8, 8)).astype(np.float32)
    >>> det = ClassicDetector(model="iforest", pca_dims=(5,)).fit(X)
    >>> det.pca_dim_, det.predict(X[:3] + 1).tolist()
    (5, [-1, -1, -1])
    """

    selects_on_labels = True
    labels_choose = "the PCA dimension"
    param_constraints = {
        "model": Options(*MODELS),
        "features": Options(*FEATURES),
        "pca_dims": Seq(COUNT),
        "pca_dim_default": optional(COUNT),
        "holdout": Float(gt=0, lt=1),
        "bandwidths": Seq(Real(gt=0)),
        "n_folds": Int(ge=2),
        "nu": Real(gt=0, le=1),
        "gamma_grid": optional(Seq(Real(gt=0))),
        "kernel_max_samples": Int(ge=2),
        "n_components_grid": Seq(COUNT),
        "covariance_type": Options("full", "tied", "diag", "spherical"),
        "reg_covar": Real(ge=0),
        "alexnet_weights": optional(Either(Text(), PathName())),
        "alexnet_size": Int(ge=63),
        "batch_size": COUNT,
        "device": DEVICE,
        "contamination": CONTAMINATION,
        "calibration": CALIBRATION,
        "random_state": optional(Int(ge=0)),
    }

    def __init__(
        self,
        *,
        model: str = "kde",
        features: str = "pca",
        pca_dims: tuple[int, ...] = (20, 40, 60, 80, 100),
        pca_dim_default: int | None = None,
        holdout: float = 0.2,
        bandwidths: tuple[float, ...] = BANDWIDTHS,
        n_folds: int = 10,
        nu: float = 0.1,
        gamma_grid: tuple[float, ...] | None = None,
        kernel_max_samples: int = 2000,
        n_components_grid: tuple[int, ...] = tuple(range(2, 21)),
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        alexnet_weights: str | None = None,
        alexnet_size: int = 224,
        batch_size: int = 128,
        device: str = "auto",
        contamination: float = 0.05,
        calibration: float | int = 0.1,
        random_state: int | None = 0,
    ):
        self.model = model
        self.features = features
        self.pca_dims = pca_dims
        self.pca_dim_default = pca_dim_default
        self.holdout = holdout
        self.bandwidths = bandwidths
        self.n_folds = n_folds
        self.nu = nu
        self.gamma_grid = gamma_grid
        self.kernel_max_samples = kernel_max_samples
        self.n_components_grid = n_components_grid
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.alexnet_weights = alexnet_weights
        self.alexnet_size = alexnet_size
        self.batch_size = batch_size
        self.device = device
        self.contamination = contamination
        self.calibration = calibration
        self.random_state = random_state

    # -- input ------------------------------------------------------------------------------
    @property
    def input_kind(self) -> str:  # type: ignore[override]
        """ "features" once fitted on (n, d) arrays, else "images" (what ``save`` records)."""
        if hasattr(self, "n_features_in_") and not hasattr(self, "image_shape_"):
            return "features"
        return "images"

    def _validate(self, X, reset: bool) -> np.ndarray:
        # (n, d) arrays are features, (n, [C,] H, W) images; after fit, follow what fit saw
        if reset:
            if self.features == "alexnet":
                from adgan.nets.alexnet import load_alexnet

                # only the convolutional stack is used; dropping the classifier frees ~230 MB
                self.alexnet_ = load_alexnet(self.alexnet_weights, self.random_state or 0).features
            as_img = self.features == "alexnet" or _ndim(X) in (3, 4)
            for stale in ("image_shape_", "n_features_in_", "feature_names_in_"):
                if hasattr(self, stale):
                    delattr(self, stale)
        else:
            as_img = hasattr(self, "image_shape_")
        if not as_img:
            return self._validate_data_2d(X, reset)
        return self._validate_images(X, reset)

    @property
    def detector_name(self) -> str:  # type: ignore[override]
        return self.model if self.features == "pca" else f"{self.model}-alexnet"

    def _features(self, X: np.ndarray) -> np.ndarray:
        """Flattened pixels, or AlexNet's features (as float64)."""
        if self.features == "alexnet":
            from adgan.nets.alexnet import cached_conv_features

            F32 = cached_conv_features(
                self.alexnet_, X, self.alexnet_size, self.batch_size, resolve_device(self.device)
            )
            return F32.astype(np.float64)
        return X.reshape(len(X), -1).astype(np.float64, copy=False)

    def _clip_dim(self, dim: int, n: int, d: int) -> int:
        return int(max(1, min(int(dim), n - 1, d)))

    # -- fitting (the steps of BaseDetector.fit) ------------------------------------------------
    def _select(self, F: np.ndarray, labels: np.ndarray | None) -> None:
        """With outlier labels, the PCA dimension of best holdout ROC-AUC (``_fit`` takes
        it from ``pca_dim_scores_``)."""
        if len(F) < 2:
            raise DataError(f"X: at least 2 samples are needed to fit, got n_samples={len(F)}")
        self.__dict__.pop("pca_dim_scores_", None)
        if labels is not None and (labels == -1).any():
            self.pca_dim_scores_ = self._select_dim(F, labels)
            log.info("PCA dimension scores (holdout ROC-AUC) %s", self.pca_dim_scores_)

    def _fit(self, F: np.ndarray) -> None:
        scores = getattr(self, "pca_dim_scores_", None)
        if scores:  # max() keeps the first maximum: the smallest dimension among ties
            chosen = max(scores, key=scores.get)
        elif self.pca_dim_default is not None:
            chosen = self.pca_dim_default
        else:
            chosen = max(self.pca_dims)
        self.pca_dim_ = self._clip_dim(chosen, len(F), F.shape[1])
        for name, value in self._fit_space(F, self.pca_dim_).items():
            setattr(self, name, value)

    def _select_dim(self, F: np.ndarray, labels: np.ndarray) -> dict[int, float]:
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import train_test_split

        try:
            tr, ho = train_test_split(
                np.arange(len(F)),
                test_size=self.holdout,
                stratify=labels,
                random_state=self.random_state,
            )
        except ValueError as exc:
            raise DataError(
                f"y: cannot hold out a stratified {self.holdout} of {len(F)} labelled items "
                f"({' '.join(str(exc).split())[:160]})"
            ) from exc
        tr = tr[labels[tr] == 1]
        if len(tr) < 2:
            raise DataError("y: fewer than 2 inliers are left after the PCA-dimension holdout")
        dims = sorted({self._clip_dim(d, len(tr), F.shape[1]) for d in self.pca_dims})
        scores = {}
        for d in dims:
            fitted = self._fit_space(F[tr], d)
            z = self._project(F[ho], fitted)
            scores[d] = float(roc_auc_score(labels[ho] == 1, self._model_score(fitted, z)))
        return scores

    def _fit_space(self, F: np.ndarray, dim: int) -> dict[str, Any]:
        """PCA to ``dim``, scaling, and the tuned model, as a dict of fitted attributes."""
        from sklearn.decomposition import PCA

        pca = PCA(n_components=dim, random_state=self.random_state).fit(F)
        var = float(np.mean(pca.explained_variance_))
        out = {
            "pca_mean_": pca.mean_,
            "pca_components_": pca.components_,
            # constant data has no variance to scale by; leave it unscaled
            "feature_scale_": float(np.sqrt(var)) if var > 0 else 1.0,
        }
        Z = self._project(F, out)
        out["train_features_"] = Z
        out.update(self._fit_model(Z))
        return out

    @staticmethod
    def _project(F: np.ndarray, fitted: dict[str, Any]) -> np.ndarray:
        return (F - fitted["pca_mean_"]) @ fitted["pca_components_"].T / fitted["feature_scale_"]

    def _fit_model(self, Z: np.ndarray) -> dict[str, Any]:
        if self.model == "kde":
            from sklearn.model_selection import GridSearchCV, KFold
            from sklearn.neighbors import KernelDensity

            folds = KFold(
                min(int(self.n_folds), len(Z)), shuffle=True, random_state=self.random_state
            )
            # GridSearchCV scores with KernelDensity.score: the held-out log-likelihood
            search = GridSearchCV(
                KernelDensity(kernel="gaussian"),
                {"bandwidth": [float(h) for h in self.bandwidths]},
                cv=folds,
            )
            search.fit(Z)
            h = float(search.best_params_["bandwidth"])
            log.info("KDE bandwidth %g", h)
            return {"model_": search.best_estimator_, "bandwidth_": h}
        if self.model == "ocsvm":
            gamma, _, _ = evangelista_gamma(
                Z, self.gamma_grid, self.kernel_max_samples, self.random_state
            )
            log.info("OC-SVM gamma %g", gamma)
            return {"model_": self._refit(Z, {"gamma_": gamma}), "gamma_": gamma}
        if self.model == "iforest":
            return {"model_": self._refit(Z, {})}
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        best, best_bic = None, np.inf
        # EM works on (n, d<=100) blocks, per component: BLAS threads cost more than they
        # give there (1.4 to 2.3x slower with 2 threads on 2 idle cores, 3 to 6x while
        # another process shares them), so one thread (docs/performance.md)
        with threadpool_limits(limits=1, user_api="blas"):
            for k in sorted({int(k) for k in self.n_components_grid if int(k) <= len(Z)}):
                gmm = GaussianMixture(
                    k,
                    covariance_type=self.covariance_type,
                    reg_covar=self.reg_covar,
                    random_state=self.random_state,
                )
                bic = gmm.fit(Z).bic(Z)
                if bic < best_bic:
                    best, best_bic = gmm, bic
        if best is None:
            raise ConfigError(
                f"n_components_grid: no count <= n_samples={len(Z)} in {self.n_components_grid}"
            )
        log.info("GMM with %d components (BIC %.6g)", best.n_components, best_bic)
        return {"model_": best, "n_components_": int(best.n_components)}

    def _refit(self, Z: np.ndarray, hyper: dict[str, Any]):
        """The model with its tuned hyperparameters, fit on Z without any search again."""
        if self.model == "kde":
            from sklearn.neighbors import KernelDensity

            return KernelDensity(kernel="gaussian", bandwidth=hyper["bandwidth_"]).fit(Z)
        if self.model == "ocsvm":
            from sklearn.svm import OneClassSVM

            return OneClassSVM(kernel="rbf", nu=self.nu, gamma=hyper["gamma_"]).fit(Z)
        from sklearn.ensemble import IsolationForest

        return IsolationForest(random_state=self.random_state).fit(Z)

    # -- scoring ------------------------------------------------------------------------------
    @staticmethod
    def _model_score(fitted: dict[str, Any], Z: np.ndarray) -> np.ndarray:
        return np.asarray(fitted["model_"].score_samples(Z), dtype=np.float64)

    def _score(self, F: np.ndarray) -> np.ndarray:
        return self._model_score(vars(self), self._project(F, vars(self)))

    # -- persistence --------------------------------------------------------------------------
    def _hyper(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("bandwidth_", "gamma_", "n_components_")
            if hasattr(self, k)
        }

    def _get_state(self) -> dict[str, Any]:
        t = torch.from_numpy
        state: dict[str, Any] = {
            "pca_dim": int(self.pca_dim_),
            "pca_mean": t(np.array(self.pca_mean_, dtype=np.float64)),
            "pca_components": t(np.array(self.pca_components_, dtype=np.float64)),
            "feature_scale": float(self.feature_scale_),
            "train_features": t(np.array(self.train_features_, dtype=np.float64)),
            "hyper": self._hyper(),
            # a refit that differs (another scikit-learn version) shows on these scores
            "check_scores": t(self._model_score(vars(self), self.train_features_[:8])),
        }
        if self.model == "gmm":
            m = self.model_
            state["gmm"] = {
                k: t(np.array(getattr(m, k), dtype=np.float64))
                for k in ("weights_", "means_", "covariances_", "precisions_cholesky_")
            }
        if self.features == "alexnet":
            state["alexnet"] = {k: v.detach().cpu() for k, v in self.alexnet_.state_dict().items()}
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        self.pca_dim_ = int(state["pca_dim"])
        self.pca_mean_ = state["pca_mean"].numpy()
        self.pca_components_ = state["pca_components"].numpy()
        self.feature_scale_ = float(state["feature_scale"])
        self.train_features_ = state["train_features"].numpy()
        for k, v in state["hyper"].items():
            if k not in ("bandwidth_", "gamma_", "n_components_"):  # data, never attributes
                raise CheckpointError(f"unexpected entry {k!r} in the detector file")
            setattr(self, k, v)
        if self.model == "gmm":
            from sklearn.mixture import GaussianMixture

            gmm = GaussianMixture(
                self.n_components_,
                covariance_type=self.covariance_type,
                reg_covar=self.reg_covar,
                random_state=self.random_state,
            )
            for k in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
                setattr(gmm, k, state["gmm"][k].numpy())
            gmm.n_features_in_ = self.train_features_.shape[1]
            gmm.converged_, gmm.n_iter_, gmm.lower_bound_ = True, 0, -np.inf
            self.model_ = gmm
        else:
            self.model_ = self._refit(self.train_features_, self._hyper())
        check = self._model_score(vars(self), self.train_features_[:8])
        if not np.allclose(check, state["check_scores"].numpy(), rtol=1e-6, atol=1e-9):
            log.warning(
                "the refit %s scores differently from the saved one (another "
                "scikit-learn version?); scores may differ slightly",
                self.model,
            )
        if self.features == "alexnet":
            from adgan.nets.alexnet import conv_stack

            net = conv_stack()
            load_state(net, state["alexnet"], "detector file", "AlexNet")
            self.alexnet_ = net.eval()
