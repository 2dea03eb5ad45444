"""The ``adgan`` command: parses, calls the library, prints. Errors are one line."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from adgan import distributed
from adgan.cli_scoring import check_out, cmd_rank, cmd_score, out_lock, say
from adgan.errors import AdganError, ConfigError
from adgan.version import __version__

#: exit statuses (``main``'s return value), stated in every command's --help and the README
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_HELP = (
    "exit status: 0 success; 1 the data, a model file or the run failed (unreadable or "
    "missing data, a damaged detector file, training diverged, a file that cannot be "
    "written); 2 usage: an unknown or missing flag, or a flag or preset value that is not "
    "accepted; 130 interrupted (finished work is kept). Errors are one line on stderr."
)
#: the commands that share their work over the processes torchrun starts
DISTRIBUTED = {"rank", "score", "train", "benchmark"}

DATA_HELP = (
    "folder holding the datasets (MNIST IDX files, cifar-10-batches-py/ ...); "
    "defaults to the ADGAN_DATA environment variable"
)


class _Parser(argparse.ArgumentParser):
    """Remembers each option's flag by the name of the parameter it sets (``flags``)."""

    def __init__(self, *args, **kwargs):
        self.flags: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.flags[action.dest] = action.option_strings[0]
        return action


def in_flags(message: str, flags: dict[str, str]) -> str:
    """The library names parameters at the start of its messages ("iterations: ...",
    "preset FILE: ..."); the command line names the flags that set them."""
    m = re.match(r"[a-z_]+(?=[: ])", message)
    if m and m.group() in flags:
        return flags[m.group()] + message[m.end() :]
    return message


def _common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default: auto); under "
        "torchrun, cuda is the local rank's GPU",
    )
    if seed:
        p.add_argument(
            "--seed",
            type=int,
            default=0,
            help="seeds the test draw, training and the search's initial latents (default: 0)",
        )
    p.add_argument("--quiet", action="store_true", help="no progress bars or log messages")
    p.flags["random_state"] = "--seed"  # the library's name for what --seed sets
    p.add_argument(
        "--json", action="store_true", help="print the results as one JSON document on stdout"
    )


def _dataset_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--dataset",
        choices=["digits", "mnist", "cifar10"],
        required=required,
        help="a labelled dataset: digits (embedded in scikit-learn), mnist or cifar10",
    )
    p.add_argument("--data-root", default=None, help=DATA_HELP)


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk", type=int, default=256, help="images per scored chunk (default: 256)")
    _common(p, seed=False)


def build_parser() -> argparse.ArgumentParser:
    from adgan.presets import available_presets
    from adgan.registry import DETECTORS

    presets = ", ".join(available_presets())
    ap = _Parser(
        prog="adgan",
        description="Image anomaly detection with generative adversarial networks (ADGAN) and "
        "its baselines. Anomaly scores: higher = more anomalous.",
    )
    ap.add_argument("--version", action="version", version=f"adgan {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "evaluate",
        help="one-versus-all ROC-AUC for one or more normal classes",
        description="Train on the normal class's training images, score a fixed "
        "random draw of the whole test set (other classes = anomalous) and print "
        "ROC-AUC per method.",
    )
    _dataset_args(p)
    p.add_argument(
        "--normal-class",
        default="0",
        help="normal class: N, a list N,M, a range N-M or all (default: 0); with --train-data "
        "a sub-folder's name, names separated by commas, or all",
    )
    p.add_argument(
        "--methods",
        default="adgan",
        help=f"comma-separated methods or all (default: adgan); known: {', '.join(DETECTORS)}",
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"built-in preset ({presets}) or a TOML file; sets the dataset default, "
        "the protocol and the methods' parameters",
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=None,
        help="test items drawn from the whole test set (default: the preset's, else 5000)",
    )
    p.add_argument("--out", default=None, help="write the records as a JSON list to this file")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="normal classes evaluated at once, each in its own process with its share of "
        "the CPU threads (default: 1). Small images (digits, MNIST) gain most: their "
        "training barely uses a second thread, so classes side by side use the cores better",
    )
    p.add_argument(
        "--alexnet-weights",
        default=None,
        help="torchvision AlexNet state dict (.pth) for the *-alexnet methods; nothing is "
        "downloaded",
    )
    p.add_argument(
        "--train-data",
        default=None,
        help="instead of --dataset: a labelled folder tree (class = sub-folder) to train on; "
        "--normal-class then names a sub-folder (the paper's LSUN protocol)",
    )
    p.add_argument(
        "--test-data",
        default=None,
        help="with --train-data: the labelled test tree; sub-folders other than the normal "
        "class are anomalous",
    )
    p.add_argument(
        "--image-size", type=int, default=None, help="with --train-data: resize to this size"
    )
    p.add_argument("--channels", type=int, choices=[1, 3], default=None, help="with --train-data")
    p.add_argument(
        "--work-dir",
        default=None,
        help="keep GAN checkpoints here (reused and resumed by later runs)",
    )
    _common(p)

    p = sub.add_parser(
        "train",
        help="fit a detector on normal images and save it",
        description="Fit a detector on the training images of one class of a "
        "dataset, or on a folder of images, and save it with its training "
        "checkpoint, loss log and sample grid in --out. Under torchrun the processes share "
        "every batch (README: Scaling out).",
    )
    _dataset_args(p)
    p.add_argument(
        "--normal-class",
        default=None,
        help="with --dataset: the class whose training images are normal (N; a detector "
        "learns one class, so lists, ranges and all are refused)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="instead of --dataset: a folder of PNG/JPEG images or an lmdb database (all normal)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="with --data: resize images to this square size (e.g. 28, 32, 64)",
    )
    p.add_argument(
        "--channels",
        type=int,
        choices=[1, 3],
        default=None,
        help="with --data: 1 (gray) or 3 (RGB); default: inferred from the images",
    )
    p.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="with --data: train on at most this many images (the first in file / key order)",
    )
    p.add_argument("--method", default="adgan", help="detector to fit (default: adgan)")
    p.add_argument("--preset", default=None, help=f"built-in preset ({presets}) or a TOML file")
    p.add_argument(
        "--iterations", type=int, default=None, help="override the preset's generator iterations"
    )
    p.add_argument("--out", required=True, help="run folder: detector.pt and training files")
    _common(p)

    p = sub.add_parser(
        "benchmark",
        help="reproduce Table 1: every class and method, resumable, with figures",
        description="Run the one-versus-all protocol for every (normal class, method, run), "
        "appending rows to OUT/results.csv as they finish (a rerun skips finished rows), then "
        "write OUT/table.md (ours beside the paper's Table 1), OUT/roc.png (Figure 3), "
        "galleries of the most and least anomalous test images by ADGAN's score "
        "(Figures 4-6) and OUT/trajectories.png (Figure 2, a 2-dimensional latent space). "
        "Under torchrun the processes share the rows (README: Scaling out).",
    )
    _dataset_args(p)
    p.add_argument(
        "--classes", default="0-9", help="normal classes: N, N,M, N-M or all (default: 0-9)"
    )
    p.add_argument(
        "--methods",
        default="all",
        help="comma-separated methods or all (default: all; the *-alexnet methods join 'all' "
        "only with --alexnet-weights)",
    )
    p.add_argument("--preset", default=None, help=f"built-in preset ({presets}) or a TOML file")
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        help="runs per class and method, seeds seed..seed+R-1 (default: 1)",
    )
    p.add_argument("--alexnet-weights", default=None, help="torchvision AlexNet state dict (.pth)")
    p.add_argument("--no-trajectories", action="store_true", help="skip Figure 2")
    p.add_argument(
        "--replace",
        default=None,
        help="methods (of --methods) to run again under today's settings: their earlier rows, "
        "every class and run, move to OUT/replaced.csv and their scores to OUT/replaced/; "
        "given again with unchanged settings (to resume, or for more classes) it keeps the "
        "replacement's rows; GANs in OUT/work/ are not retrained",
    )
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    _common(p)

    p = sub.add_parser(
        "rank",
        help="rank an unlabelled collection (folder or lmdb), resumable, with galleries",
        description="Stream a folder of images or an LSUN lmdb database through a saved "
        "detector in chunks. OUT/scores.csv (path, score, percentile, flagged) grows as chunks "
        "finish and is sorted most anomalous first at the end; a rerun resumes. Unreadable "
        "images go to OUT/skipped.csv with the reason. Writes most_anomalous.png, "
        "least_anomalous.png and a self-contained gallery.html. Under torchrun the "
        "processes share the images (README: Scaling out).",
    )
    p.add_argument(
        "--model", required=True, help="a run folder from `adgan train` or a detector file"
    )
    p.add_argument("--data", required=True, help="a folder of images or an lmdb database")
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    p.add_argument(
        "--fpr",
        type=float,
        default=None,
        help="flag images past the score that flags this fraction of the calibration "
        "(normal) images (default: the detector's contamination threshold)",
    )
    _score_args(p)

    p = sub.add_parser(
        "score",
        help="score images with a saved detector, most anomalous first",
        description="Stream images through a saved detector as rank does (resumable; "
        "unreadable images listed in OUT's stem + .skipped.csv) and write one CSV of id "
        "(image path or index), anomaly score, its percentile among the calibration images "
        "and whether it is past the threshold, sorted most anomalous first. Under torchrun "
        "the processes share the images (README: Scaling out).",
    )
    p.add_argument(
        "--model", required=True, help="a run folder from `adgan train` or a detector file"
    )
    _dataset_args(p)
    p.add_argument(
        "--split",
        choices=["train", "test"],
        default="test",
        help="with --dataset: which split to score (default: test)",
    )
    p.add_argument(
        "--data", default=None, help="instead of --dataset: a folder of images or an lmdb database"
    )
    p.add_argument(
        "--out",
        required=True,
        help="CSV file to write (work in progress is kept in OUT.work/ and resumed by a rerun)",
    )
    p.add_argument(
        "--fpr",
        type=float,
        default=None,
        help="flag images past the score that flags this fraction of the calibration "
        "(normal) images (default: the detector's contamination threshold)",
    )
    _score_args(p)
    ap.commands = sub.choices  # command -> its parser
    for parser in (ap, *ap.commands.values()):
        parser.epilog = EXIT_HELP
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (``EXIT_HELP``). argparse exits with 2 on
    a flag it cannot parse; the library's errors are reported here as one line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = parser.commands[args.command].flags
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    commands = {
        "evaluate": cmd_evaluate,
        "train": cmd_train,
        "score": cmd_score,
        "benchmark": cmd_benchmark,
        "rank": cmd_rank,
    }
    try:
        if getattr(args, "device", None) is not None:
            # before any work, whichever methods run (some never reach a device), before a
            # detector file can be blamed for a device this machine lacks, and before
            # torchrun's processes meet
            from adgan.base import resolve_device

            resolve_device(args.device)
        if distributed.launched_size() > 1:  # started by torchrun
            if args.command not in DISTRIBUTED:
                raise ConfigError(
                    f"{args.command} runs in one process; start it without torchrun "
                    f"({', '.join(sorted(DISTRIBUTED))} run on several)"
                )
            args.device = distributed.join_world(args.device)
            if not distributed.is_first():  # one copy of each message: rank 0's
                logging.getLogger().setLevel(logging.WARNING)
        return commands[args.command](args)
    except (AdganError, OSError) as exc:  # OSError names its file: unwritable --out, full disk
        if distributed.is_first() or not getattr(exc, "shared", False):
            print(f"adgan {args.command}: error: {in_flags(str(exc), flags)}", file=sys.stderr)
        return exit_status(exc)
    except KeyboardInterrupt:
        print(f"adgan {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        distributed.leave_world()


def exit_status(exc: BaseException) -> int:
    """2 for a value the command line or its preset gave that is not accepted
    (``ConfigError``); 1 for data, model files, training and the file system."""
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def _preset_and_dataset(args):
    from adgan.presets import load_preset

    preset = load_preset(args.preset)
    dataset = args.dataset or preset.dataset
    return preset.for_dataset(dataset), dataset


def _check_paths(args) -> None:
    """Paths given for later (a weights file, a work folder) checked at once, whether or not
    the methods asked for read them: a mistyped one is said before any work."""
    from adgan.errors import CheckpointError, OutputError

    w = getattr(args, "alexnet_weights", None)
    if w and w != "random" and not Path(w).is_file():
        raise CheckpointError(f"--alexnet-weights: {w} is not a file (torchvision's AlexNet "
                              "state dict, .pth)")  # fmt: skip
    d = getattr(args, "work_dir", None)
    if d and Path(d).exists() and not Path(d).is_dir():
        raise OutputError(f"--work-dir: {d} is a file; expected a folder")


def cmd_evaluate(args) -> int:
    from adgan.evaluate import evaluate_classes, load_for, parse_classes, parse_methods

    _check_paths(args)
    if args.out:
        check_out(Path(args.out), folder=False)  # before the data is read
    preset, dataset = _preset_and_dataset(args)
    methods = parse_methods(args.methods, alexnet=args.alexnet_weights is not None)
    if args.alexnet_weights:
        preset.params["alexnet_weights"] = args.alexnet_weights
    if args.train_data is not None:
        from adgan.evaluate import load_folder_pair

        if args.test_data is None:
            raise ConfigError("--train-data needs --test-data (the labelled test tree)")
        train, test, classes = load_folder_pair(
            args.train_data, args.test_data, args.channels, args.image_size, args.normal_class
        )
        dataset = Path(args.train_data).name
    else:
        if dataset is None:
            raise ConfigError(
                "--dataset: required (digits, mnist or cifar10) when the preset names none"
            )
        classes = parse_classes(args.normal_class)
        train, test = load_for(dataset, args.data_root)
    records: list[dict] = []
    order = {c: i for i, c in enumerate(classes)}  # --out lists the records in class order
    with out_lock(args.out):
        for rec in evaluate_classes(
            train,
            test,
            dataset,
            classes,
            methods,
            preset,
            jobs=args.jobs,
            seed=args.seed,
            device=args.device,
            n_test=args.n_test,
            work_dir=args.work_dir,
            verbose=not args.quiet,
        ):
            if args.train_data is not None:  # a folder tree's classes go by their names
                rec["class_name"] = train.classes[rec["normal_class"]]
            records.append(rec)
            if not args.json:
                print(
                    f"{dataset} class {rec.get('class_name', rec['normal_class'])} "
                    f"{rec['method']:<14} "
                    f"AUC {rec['auc']:.4f}  (n_train {rec['n_train']}, n_test {rec['n_test']}, "
                    f"fit {rec['fit_seconds']:.1f}s, score {rec['score_seconds']:.1f}s)",
                    flush=True,
                )
            if args.out:
                records.sort(key=lambda r: order[r["normal_class"]])  # stable: methods keep theirs
                _write_json(args.out, records)
    from adgan.evaluate import mean_auc

    means = mean_auc(records) if len(classes) > 1 else {}
    if args.json:
        print(json.dumps({"records": records, "mean_auc": means}, indent=1, default=str))
    for m, v in means.items():
        if not args.json:
            print(f"{dataset} mean over {len(classes)} classes {m:<14} AUC {v:.4f}")
    return 0


def cmd_benchmark(args) -> int:
    from adgan.benchmark.runner import run_benchmark
    from adgan.evaluate import parse_classes, parse_methods

    _check_paths(args)
    preset, dataset = _preset_and_dataset(args)
    if dataset is None:
        raise ConfigError(
            "--dataset: required (digits, mnist or cifar10) when the preset names none"
        )
    if args.runs < 1:
        raise ConfigError(f"--runs: expected at least 1, got {args.runs}")
    methods = parse_methods(args.methods, alexnet=args.alexnet_weights is not None)
    extra = {"alexnet_weights": args.alexnet_weights} if args.alexnet_weights else None
    classes = parse_classes(args.classes, option="classes")
    replace = [m.strip() for m in (args.replace or "").split(",") if m.strip()]
    stray = [m for m in replace if m not in methods]
    if stray:
        raise ConfigError(
            f"--replace: {', '.join(stray)} not among --methods ({', '.join(methods)})"
        )
    check_out(Path(args.out), folder=True)
    rows = run_benchmark(
        dataset,
        classes,
        methods,
        preset,
        args.out,
        runs=args.runs,
        data_root=args.data_root,
        seed=args.seed,
        device=args.device,
        trajectories=not args.no_trajectories,
        extra_params=extra,
        progress=not args.quiet,
        replace=replace,
    )
    out = Path(args.out)
    text = (out / "table.md").read_text() if distributed.is_first() else ""
    say(
        args,
        f"{text}\n{len(rows)} rows in {out / 'results.csv'}",
        {"rows": rows, "results": str(out / "results.csv"), "table": str(out / "table.md")},
    )
    return 0


def _write_json(path: str, obj) -> None:
    from adgan.files import atomic_write

    text = json.dumps(obj, indent=2)
    atomic_write(Path(path), lambda fh: fh.write(text.encode()))


def cmd_train(args) -> int:
    from adgan.data import one_vs_all
    from adgan.evaluate import load_for
    from adgan.params import check_params
    from adgan.registry import make_detector

    preset, dataset = _preset_and_dataset(args)
    out = Path(args.out)
    params = preset.params_for(args.method)
    if args.iterations is not None:
        params["iterations"] = args.iterations
    params.update(
        random_state=args.seed,
        device=args.device,
        verbose=not args.quiet and distributed.is_first(),  # one progress bar
        work_dir=str(out / "gan"),
    )
    det = make_detector(args.method, **params)
    check_params(det)  # settings refused before any image is read or folder made
    check_out(out, folder=True)
    if args.data is not None:
        images = _training_images(args)
    else:
        if dataset is None or args.normal_class is None:
            raise ConfigError("train: give --data FOLDER, or --dataset with --normal-class")
        train, test = load_for(dataset, args.data_root)
        normal = _one_class(args.normal_class)
        images = one_vs_all(train, test, normal, n_test=None, seed=args.seed).x_train
    with out_lock(args.out, folder=True):
        det.fit(images)  # under torchrun: batches shared over the processes
        path = distributed.on_first(lambda: det.save(out / "detector.pt"))
    threshold = -float(det.offset_)
    say(
        args,
        f"trained {args.method} on {len(images)} images; saved {path}; threshold "
        f"(anomaly score) {threshold:.6g}",
        {"method": args.method, "n_images": len(images), "detector": str(path),
         "threshold": threshold},
    )  # fmt: skip
    return 0


def _one_class(text: str) -> int:
    """train's --normal-class: the class syntax of evaluate, one class of it."""
    from adgan.evaluate import parse_classes

    classes = parse_classes(text)
    if len(classes) != 1:
        raise ConfigError(
            f"normal_class: a detector learns one class; expected one class N, got {text!r} "
            "(evaluate and benchmark take lists, ranges and all)"
        )
    return classes[0]


def _training_images(args):
    from adgan.data import load_folder
    from adgan.data.collection import Collection, is_lmdb

    if args.max_images is not None and args.max_images < 1:
        raise ConfigError(f"--max-images: expected at least 1, got {args.max_images}")
    if is_lmdb(args.data):
        if args.channels is None or args.image_size is None:
            raise ConfigError("train --data DB.lmdb: give --channels and --image-size (e.g. 3, 64)")
        images, _ = Collection(args.data, args.channels, args.image_size).load(args.max_images)
        return images
    images = load_folder(
        args.data, channels=args.channels, size=args.image_size, labelled=False
    ).images
    return images[: args.max_images] if args.max_images else images


if __name__ == "__main__":
    sys.exit(main())
