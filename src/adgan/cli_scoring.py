"""The ``rank`` and ``score`` commands (one streaming implementation, ``adgan.rank``) and
what every command shares: its results printed once, the lock of its output."""

from __future__ import annotations

import json
import os
from pathlib import Path

from adgan import distributed
from adgan.errors import ConfigError, OutputError


def say(args, text: str, result) -> None:
    """A command's results, once (on rank 0): ``text``, or ``result`` as JSON with --json."""
    if not distributed.is_first():
        return
    print(json.dumps(result, indent=1, default=str) if args.json else text, flush=True)


def out_lock(out: str | None, folder: bool = False):
    """Held while a command writes ``out`` (a file, or a folder): a second process on the
    same output stops at once with an error naming the lock (``.NAME.lock`` beside a
    file, ``OUT/.lock`` in a folder; left in place, hidden). Under torchrun rank 0 holds
    it for all."""
    import contextlib

    from adgan.files import exclusive

    if out is None:
        return contextlib.nullcontext()
    p = Path(out)
    check_out(p, folder)  # on every process: none goes on alone
    if not distributed.is_first():
        return contextlib.nullcontext()
    lock = p / ".lock" if folder else p.with_name(f".{p.name}.lock")
    try:  # a folder that cannot be made or written: said now, naming --out
        lock.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o666))
    except OSError as exc:
        raise OutputError(f"out: cannot write {p} ({exc.strerror or exc})") from None
    return exclusive(lock, str(p))


def check_out(p: Path, folder: bool) -> None:
    """``--out`` refused before any work when it cannot be what the command writes: a folder
    where a file goes, a file where a folder goes, or a path below a file."""
    if folder and p.exists() and not p.is_dir():
        raise OutputError(f"out: {p} is a file; expected a folder to write in (new, or one "
                          "this command wrote before)")  # fmt: skip
    if not folder and p.is_dir():
        raise OutputError(f"out: {p} is a folder; expected a file to write")
    above = p.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise OutputError(f"out: {above} is a file, so {p} cannot be written below it")


def model_path(model: str) -> Path:
    p = Path(model)
    return p / "detector.pt" if p.is_dir() else p


def _check_score_args(args) -> None:
    """rank's and score's own flags, refused before a model is read or a lock taken."""
    from adgan.rank import check_fpr

    if args.chunk < 1:
        raise ConfigError(f"--chunk: expected at least 1, got {args.chunk}")
    check_fpr(args.fpr)
    if getattr(args, "dataset", None) is not None and args.data is not None:
        raise ConfigError("--data and --dataset: give one of them, not both")


def _scored(args, res, text: str) -> None:
    say(
        args,
        text,
        {"scored": res.n_scored, "skipped": res.n_skipped, "flagged": res.n_flagged,
         "threshold": res.threshold, "out": str(res.out)},
    )  # fmt: skip


def cmd_rank(args) -> int:
    from adgan.rank import collection_for, rank_collection
    from adgan.registry import load_detector

    _check_score_args(args)
    # one progress bar, rank's own, rather than one per chunk
    det = load_detector(model_path(args.model), device=args.device, verbose=False)
    coll = collection_for(det, args.data)  # before --out is made: nothing left behind
    with out_lock(args.out, folder=True):
        res = rank_collection(
            det, coll, args.out, chunk=args.chunk, fpr=args.fpr, progress=not args.quiet
        )
    _scored(
        args,
        res,
        f"ranked {res.n_scored} images ({res.n_skipped} skipped) -> {res.out / 'scores.csv'}; "
        f"{res.n_flagged} past the threshold; galleries in {res.out}",
    )
    return 0


def cmd_score(args) -> int:
    from adgan.data.collection import ArrayCollection
    from adgan.evaluate import load_for
    from adgan.rank import collection_for, score_collection
    from adgan.registry import load_detector

    _check_score_args(args)
    det = load_detector(model_path(args.model), device=args.device, verbose=False)
    if args.data is not None:
        # images of the model's shape as they are: another shape is listed, never converted
        coll = collection_for(det, args.data, exact=True)
    else:
        if args.dataset is None:
            raise ConfigError("score: give --data FOLDER or --dataset")
        train, test = load_for(args.dataset, args.data_root)
        split = train if args.split == "train" else test
        coll = ArrayCollection(split.images, f"{args.dataset} {args.split}", det.image_shape_)
    with out_lock(args.out):
        res = score_collection(
            det, coll, args.out, chunk=args.chunk, fpr=args.fpr, progress=not args.quiet
        )
    skipped = f", {res.n_skipped} unreadable (listed beside it)" if res.n_skipped else ""
    _scored(
        args,
        res,
        f"scored {res.n_scored} images -> {res.out}; {res.n_flagged} past the threshold{skipped}",
    )
    return 0
