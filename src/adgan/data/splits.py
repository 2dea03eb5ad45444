"""The one-versus-all protocol: one class is normal, every other class is anomalous."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adgan.data.imageset import ImageSet
from adgan.errors import ConfigError, DataError


@dataclass
class OneVsAll:
    """One anomaly-detection task built from a labelled (train, test) pair.

    Attributes
    ----------
    x_train : ndarray
        uint8 training images of the normal class.
    x_test : ndarray
        uint8 test images of all classes.
    y_test : ndarray
        int64, 1 where the test image is anomalous (its class is not ``normal_class``).
    test_index : ndarray
        Sorted indices of the test images into the test :class:`ImageSet`.
    normal_class : int
        The label treated as normal.
    """

    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_index: np.ndarray
    normal_class: int


def one_vs_all(
    train: ImageSet,
    test: ImageSet,
    normal_class: int,
    n_test: int | None = 5000,
    seed: int = 0,
    n_train: int | None = None,
) -> OneVsAll:
    """Build the paper's one-versus-all task for ``normal_class``.

    Training uses every training image of the normal class, or ``n_train`` of them drawn
    with a generator seeded from ``seed``. Testing uses ``n_test`` images drawn without
    replacement by ``np.random.default_rng(seed)`` from the whole test set; None, or a number
    at least the test set's size, uses all of it.
    """
    for name, part in (("train", train), ("test", test)):
        if part.labels is None:
            raise DataError(f"one-vs-all needs labels, but the {name} set is unlabelled")
    assert train.labels is not None and test.labels is not None
    if train.classes is not None:
        available = list(range(len(train.classes)))
    else:
        available = np.union1d(train.labels, test.labels).tolist()
    if normal_class not in available:
        names = ", ".join(
            f"{k} ({train.classes[k]})" if train.classes else str(k) for k in available
        )
        raise ConfigError(f"normal class {normal_class} is not one of the classes: {names}")
    for name, value in (("n_test", n_test), ("n_train", n_train)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be a positive integer or None, got {value}")

    train_index = np.flatnonzero(train.labels == normal_class)
    if len(train_index) == 0:
        raise DataError(f"the training set has no images of the normal class {normal_class}")
    if n_train is not None and n_train < len(train_index):
        # A stream separate from the test draw, so n_train does not change the test set.
        rng = np.random.default_rng([seed, 1])
        train_index = np.sort(rng.permutation(train_index)[:n_train])

    if n_test is None or n_test >= len(test):
        test_index = np.arange(len(test))
    else:
        rng = np.random.default_rng(seed)
        test_index = np.sort(rng.choice(len(test), size=n_test, replace=False))
    y_test = (test.labels[test_index] != normal_class).astype(np.int64)
    if y_test.all() or not y_test.any():
        missing = "normal" if y_test.all() else "anomalous"
        raise DataError(
            f"the {len(test_index)} test images drawn hold no {missing} images "
            f"for normal class {normal_class}"
        )
    return OneVsAll(
        x_train=train.images[train_index],
        x_test=test.images[test_index],
        y_test=y_test,
        test_index=test_index,
        normal_class=int(normal_class),
    )
