"""One-versus-all evaluation (Section 4.3): fit on one class's training images, score a
fixed random draw of the test set, report ROC-AUC with anomalous = positive."""

from __future__ import annotations

import logging
import platform
import tempfile
import time
from collections.abc import Iterable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from adgan.data import ImageSet, load_dataset, one_vs_all
from adgan.detectors.adgan import LatentSearchDetector
from adgan.errors import ConfigError
from adgan.presets import Preset
from adgan.registry import DETECTORS, GAN_DETECTORS, make_detector
from adgan.version import __version__

log = logging.getLogger(__name__)


def parse_methods(text: str, alexnet: bool = False) -> list[str]:
    """Comma-separated names or 'all' (which takes the *-alexnet methods only when AlexNet
    weights are given: they cannot run without them)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if names == ["all"]:
        return [m for m in DETECTORS if alexnet or not m.endswith("-alexnet")]
    for m in names:
        if m not in DETECTORS:
            raise ConfigError(f"methods: unknown method {m!r}; known: {', '.join(DETECTORS)}, all")
    if not names:
        raise ConfigError("methods: expected a comma-separated list of method names")
    return names


def parse_classes(text: str, n_classes: int = 10, option: str = "normal_class") -> list[int]:
    """'3', '0,1,8', '0-9' or 'all'."""
    if text.strip() == "all":
        return list(range(n_classes))
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                out += list(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError as exc:
        raise ConfigError(f"{option}: expected N, N,M, N-M or all, got {text!r}") from exc
    if not out:
        raise ConfigError(f"{option}: no class in {text!r}")
    wrong = [c for c in out if not 0 <= c < n_classes]
    if wrong:
        raise ConfigError(
            f"{option}: class {wrong[0]} in {text!r} is not one of the dataset's classes "
            f"0-{n_classes - 1}"
        )
    return out


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here ("AVX2", "AVX512", ...; its
    ATEN_CPU_CAPABILITY setting included): a GAN trained under another one rounds otherwise
    and becomes another network (docs/results.md, "The CPU a row is re-run on")."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return get() if get is not None else "unknown"


def environment() -> dict:
    return {
        "adgan_version": __version__,
        "torch_version": torch.__version__,
        "machine": f"{platform.machine()} {cpu_capability()}, {torch.get_num_threads()} threads",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def evaluate_class(
    train: ImageSet,
    test: ImageSet,
    dataset: str,
    normal_class: int,
    methods: Iterable[str],
    preset: Preset,
    seed: int = 0,
    run: int = 0,
    device: str = "auto",
    n_test: int | None = None,
    work_dir: str | Path | None = None,
    verbose: bool = False,
    keep: dict | None = None,
) -> Iterable[dict]:
    """Yield one record per method for one normal class.

    The test draw depends on ``seed`` alone, so every run and method sees the same items;
    the models are seeded with ``seed + run``. Methods that share ADGAN's GAN (adgan,
    anogan, discriminator, prior) train it once, in ``work_dir`` (a temporary folder if
    None), and a latent-search method (prior) whose parameters equal an earlier one's
    (adgan) takes its fit and scores from that one's searches (one search, two scores).
    ``keep``, when given, receives (detector, task, test scores, parts) by method name: parts
    the dict of the score's parts where the detector gives them (``score_parts``), else None.
    """
    n_test = n_test if n_test is not None else preset.protocol.get("n_test", 5000)
    task = one_vs_all(
        train, test, normal_class, n_test=n_test, seed=seed, n_train=preset.protocol.get("n_train")
    )
    with ExitStack() as stack:
        if work_dir is None:
            work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="adgan-"))
        gan_dir = Path(work_dir) / f"gan-{dataset}-c{normal_class}-s{seed + run}"
        searched: list[tuple[LatentSearchDetector, object]] = []  # (detector, test scores)
        for method in methods:
            params = preset.params_for(method)
            params.update(random_state=seed + run, device=device, verbose=verbose)
            if method in GAN_DETECTORS:
                params["work_dir"] = str(gan_dir)
            det = make_detector(method, **params)
            t0 = time.perf_counter()
            donor = None
            if isinstance(det, LatentSearchDetector):
                donor = next(((d, s) for d, s in searched if det.shares_search_with(d)), None)
            if donor is not None:  # the same search: read this method's score from it
                det.fit_from(donor[0])
            elif det.selects_on_labels:
                # the paper picks the PCA dimension on a small labelled holdout (AnoGAN its
                # number of steps, here): drawn from the training split (other classes'
                # training images), never from test
                X_lab, y_lab = labelled_training_set(train, task.x_train, normal_class, seed)
                det.fit(X_lab, y_lab)
            else:
                det.fit(task.x_train)
            t1 = time.perf_counter()
            if isinstance(det, LatentSearchDetector):
                both = donor[1] if donor is not None else det.search_scores(task.x_test)
                searched.append((det, both))
                scores = -det.score_samples_from(both)
                parts = None
            elif hasattr(det, "score_parts"):  # the score's parts kept beside it
                parts = det.score_parts(task.x_test)
                scores = np.zeros(len(task.x_test))
                for v in parts.values():
                    scores += v
            else:
                scores, parts = det.anomaly_score(task.x_test), None
            t2 = time.perf_counter()
            auc = float(roc_auc_score(task.y_test, scores))
            # the caller prints the result (once); the log keeps it at debug level
            log.debug("%s class %s %s: AUC %.4f", dataset, normal_class, method, auc)
            if keep is not None:
                keep[method] = (det, task, scores, parts)
            yield {
                "dataset": dataset,
                "normal_class": int(normal_class),
                "method": method,
                "run": int(run),
                "seed": int(seed + run),
                "auc": auc,
                "n_train": int(len(task.x_train)),
                "n_test": int(len(task.x_test)),
                "n_anomalous": int(task.y_test.sum()),
                "fit_seconds": round(t1 - t0, 3),
                "score_seconds": round(t2 - t1, 3),
                "preset": preset.name,
                "device": str(getattr(det, "device", "cpu")),
                **environment(),
            }


def labelled_training_set(
    train: ImageSet, x_normal: np.ndarray, normal_class: int, seed: int, fraction: float = 0.1
):
    """The normal training images plus anomalies drawn from the other classes' training
    images (``fraction`` of the normal count, at least 20), labelled +1 / -1."""
    others = np.flatnonzero(train.labels != normal_class)
    n = min(len(others), max(20, int(fraction * len(x_normal))))
    pick = np.sort(np.random.default_rng([seed, 2]).choice(others, n, replace=False))
    X = np.concatenate([x_normal, train.images[pick]])
    y = np.concatenate([np.ones(len(x_normal), int), -np.ones(n, int)])
    return X, y


def folder_classes(text: str, classes: list[str], where: str) -> list[str]:
    """The normal classes of a labelled folder tree, by sub-folder name: one name, names
    separated by commas (a name holding a comma only alone), or ``all``; each must be a
    sub-folder of ``where`` (``classes``). A sub-folder named "all" is that class."""
    if text in classes:
        return [text]
    if text.strip() == "all":
        return list(classes)
    parts = [t.strip() for t in text.split(",") if t.strip()]
    for t in parts or [text]:
        if t not in classes:
            raise ConfigError(
                f"normal_class: no sub-folder {t!r} in {where}; found {', '.join(classes)}"
            )
    return list(dict.fromkeys(parts))


def load_folder_pair(
    train_dir: str, test_dir: str, channels: int | None, size: int | None, normal: str
) -> tuple[ImageSet, ImageSet, list[int]]:
    """Two labelled folder trees (class = sub-folder) on one class list, and the indices in it
    of the normal classes (``folder_classes``: by sub-folder name, or all). Unreadable images
    are skipped (and logged)."""
    from adgan.data import load_folder

    train = load_folder(train_dir, channels=channels, size=size, labelled=True, on_error="skip")
    ch = channels or train.images.shape[1]
    test = load_folder(
        test_dir, channels=ch, size=size or train.images.shape[-1], labelled=True, on_error="skip"
    )
    names = sorted(set(train.classes) | set(test.classes))
    wanted = folder_classes(normal, list(train.classes), train_dir)
    for s in (train, test):
        s.labels = np.array([names.index(s.classes[k]) for k in s.labels], dtype=np.int64)
        s.classes = names
    return train, test, [names.index(c) for c in wanted]


def load_for(dataset: str, data_root: str | None):
    if dataset == "digits":
        return load_dataset("digits")
    return load_dataset(dataset, data_root)


def mean_auc(records: list[dict]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in records:
        by.setdefault(r["method"], []).append(r["auc"])
    return {m: float(np.mean(v)) for m, v in by.items()}


def evaluate_classes(
    train: ImageSet,
    test: ImageSet,
    dataset: str,
    classes: list[int],
    methods: list[str],
    preset: Preset,
    jobs: int = 1,
    verbose: bool = False,
    **kwargs,
) -> Iterable[dict]:
    """``evaluate_class`` for each class in turn, or, with ``jobs`` > 1, for ``jobs`` classes
    at once, each in its own process with its share of the CPU threads. Records come as each
    class finishes: in class order with one job, in the order of finishing with more (each
    class's records stay together and in method order).

    Why processes: the small networks of the digits and MNIST spend most of their time in
    per-operation overhead that more threads do not shorten (training digits: 56.6 s with
    one thread, 51.7 s with two, measured), so classes side by side use the cores better
    (three digit classes with ``jobs=3`` on 2 cores: 1 min 49 s, against 3 min 7 s in turn).
    Each record is the one ``jobs=1`` gives, up to the float rounding of a different thread
    count."""
    if jobs < 1:
        raise ConfigError(f"--jobs: expected at least 1, got {jobs}")
    jobs = min(jobs, len(classes))
    if jobs == 1:
        for c in classes:
            yield from evaluate_class(
                train, test, dataset, c, methods, preset, verbose=verbose, **kwargs
            )
        return
    import multiprocessing as mp

    threads = max(1, torch.get_num_threads() // jobs)
    ctx = mp.get_context("spawn")  # a fork would copy the parent's OpenMP threads' state
    lock = ctx.RLock()
    slot = ctx.Value("i", 0)
    args = (train, test, dataset, methods, preset, verbose, kwargs)
    pool = ctx.Pool(jobs, initializer=_init_worker, initargs=(args, threads, lock, slot))
    try:
        for records in pool.imap_unordered(_class_records, classes):
            yield from records
        pool.close()
    finally:
        pool.terminate()  # stops the other classes at once on an error or an interrupt
        pool.join()


_WORKER: dict = {}


def _init_worker(args, threads: int, lock, slot) -> None:
    import signal

    from adgan import progress

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    torch.set_num_threads(threads)
    with slot.get_lock():
        progress.configure(position=slot.value, lock=lock)
        slot.value += 1
    _WORKER["args"] = args


def _class_records(c: int) -> list[dict]:
    from adgan import progress

    train, test, dataset, methods, preset, verbose, kwargs = _WORKER["args"]
    progress.configure(prefix=f"class {c}: ")
    return list(evaluate_class(train, test, dataset, c, methods, preset, verbose=verbose, **kwargs))
