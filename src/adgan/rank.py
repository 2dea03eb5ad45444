"""Score and rank an image collection, streaming and resumable, in one or several processes.

Images are read and scored in chunks; each chunk's scores are appended to a CSV file (and
unreadable images to ``skipped.csv`` with the reason) before the next chunk starts, so an
interrupted run resumes where it stopped and loses nothing finished. At the end the scores
are written sorted, most anomalous first (``rank``: ``scores.csv`` and galleries drawn from
the top and bottom of the ranking alone; ``score``: one CSV file).

Under ``torchrun`` every process scores its own share of the images not yet scored (every
n-th, ``adgan.distributed.shard``) into its own file ``scores.part-R-of-N.csv``; rank 0
merges the parts. A rerun, with any number of processes, first gathers every finished row.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adgan import distributed
from adgan.data.collection import Collection
from adgan.errors import ConfigError, DataError
from adgan.files import (
    atomic_write,
    complete_rows,
    csv_text,
    csv_untext,
    differences,
    fingerprint,
    read_json_object,
    write_csv,
    write_json,
)
from adgan.plots import image_grid
from adgan.progress import progress_bar

SCORE_FIELDS = ["path", "score", "percentile", "flagged"]


@dataclass
class RankResult:
    n_scored: int
    n_skipped: int
    threshold: float
    out: Path
    n_flagged: int = 0


def check_fpr(fpr: float | None) -> None:
    """None, or a fraction strictly between 0 and 1 (NaN refused)."""
    if fpr is not None and not 0.0 < fpr < 1.0:
        raise ConfigError(f"fpr: expected a fraction between 0 and 1, got {fpr}")


def threshold_for(det, fpr: float | None) -> float:
    """Anomaly-score cut-off from the calibration (normal) images alone: the detector's own
    (its contamination quantile), or the one that flags a fraction ``fpr`` of them."""
    if fpr is None:
        return -float(det.offset_)
    check_fpr(fpr)
    return float(np.quantile(-det.calibration_scores_, 1.0 - fpr))


def _parts(work: Path, stem: str) -> list[Path]:
    return sorted(work.glob(f"{stem}.part-*-of-*.csv"))


def _read_done(work: Path, parts: bool = True) -> tuple[dict[str, float], dict[str, str]]:
    """Finished rows of the running files and (with ``parts``) every process's part files; a
    row whose score is not a finite number (damaged, or edited by hand) is left out, and its
    image scored again."""
    scores: dict[str, float] = {}
    for f in [work / "scores.csv", *(_parts(work, "scores") if parts else [])]:
        for r in complete_rows(f):
            try:
                score = float(r["score"])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(score):
                scores[csv_untext(r["path"])] = score
    skipped: dict[str, str] = {}
    for f in [work / "skipped.csv", *(_parts(work, "skipped") if parts else [])]:
        skipped.update(
            {csv_untext(r["path"]): r["reason"] for r in complete_rows(f) if "path" in r}
        )
    return scores, skipped


def _meta(det, coll: Collection) -> dict:
    """What a ranking folder was made with: the detector and the collection."""
    import json

    params = json.dumps(det.get_params(), sort_keys=True, default=str)
    model = fingerprint(params, np.asarray(det.calibration_scores_, dtype=np.float64))
    return {"model": model, "data": coll.source}


def _check_meta(work: Path, meta: dict, what: str) -> None:
    path = work / "meta.json"
    if not path.exists():
        write_json(path, meta)
        return
    old = read_json_object(path, "ranking folder's record of its model and collection")
    if differences(old, meta):
        raise ConfigError(
            f"{what} holds a ranking by another model or of another collection "
            f"({old.get('data')}); use another output {'folder' if what == str(work) else 'file'}"
        )


def _rewrite(path: Path, fields: list[str], rows: list[list]) -> None:
    """Rows whose first cell is a path (made safe for spreadsheets), written atomically."""
    write_csv(path, fields, ([csv_text(r[0]), *r[1:]] for r in rows))


@dataclass
class Scored:
    """Every process's scores, merged and sorted."""

    paths: list[str]
    scores: np.ndarray
    percentiles: np.ndarray
    threshold: float
    n_skipped: int
    skipped: dict


def stream_scores(det, coll, work: Path, chunk: int, fpr, progress: bool, what: str):
    """Score this process's share of the images of ``coll`` not yet in ``work``'s files,
    then wait for the other processes; return the threshold."""
    work.mkdir(parents=True, exist_ok=True)
    threshold = threshold_for(det, fpr)
    rank, size = distributed.rank_and_size()

    def prepare() -> None:
        _check_meta(work, _meta(det, coll), what)
        scores, skipped = _read_done(work)
        present = set(coll.ids())  # rows of files gone since the last run are dropped
        # start clean (drops half-written last lines), keeping finished rows, parts merged
        _rewrite(
            work / "scores.csv",
            ["path", "score"],
            [[p, repr(s)] for p, s in scores.items() if p in present],
        )
        _rewrite(
            work / "skipped.csv",
            ["path", "reason"],
            [[p, r] for p, r in skipped.items() if p in present],
        )
        for f in _parts(work, "scores") + _parts(work, "skipped"):
            f.unlink()

    distributed.on_first(prepare)
    # what prepare gathered: the same on every rank (parts written from now on are not read,
    # or a fast rank's first rows would change a slow rank's list and so the shares)
    scores, skipped = _read_done(work, parts=False)
    todo = distributed.shard([i for i in coll.ids() if i not in scores and i not in skipped])
    suffix = "" if size == 1 else f".part-{rank}-of-{size}"
    files = {k: work / f"{k}{suffix}.csv" for k in ("scores", "skipped")}
    if size > 1:
        _rewrite(files["scores"], ["path", "score"], [])
        _rewrite(files["skipped"], ["path", "reason"], [])
    done = len(scores) + len(skipped) if size == 1 else 0
    bar = progress_bar(progress and rank == 0, done + len(todo), "score", "img", initial=done)
    batch_ids: list[str] = []
    batch: list[np.ndarray] = []
    enc = {"newline": "", "encoding": "utf-8", "errors": "surrogateescape"}
    with files["scores"].open("a", **enc) as sf, files["skipped"].open("a", **enc) as kf:
        sw, kw = csv.writer(sf), csv.writer(kf)

        def flush() -> None:
            if not batch:
                return
            s = det.anomaly_score(np.stack(batch))
            sw.writerows([[csv_text(p), repr(float(v))] for p, v in zip(batch_ids, s, strict=True)])
            sf.flush()
            os.fsync(sf.fileno())
            bar.update(len(batch))
            batch_ids.clear()
            batch.clear()

        for id_ in todo:
            try:
                batch.append(coll.read(id_))
                batch_ids.append(id_)
            except DataError as exc:
                reason = getattr(exc, "reason", str(exc))
                kw.writerow([csv_text(id_), reason])
                kf.flush()
                bar.update(1)
            if len(batch) >= chunk:
                flush()
        flush()
    bar.close()
    distributed.wait_all()
    return threshold


def _merged(det, coll, work: Path, threshold: float) -> Scored:
    """Every process's rows, sorted most anomalous first (on rank 0, after ``wait_all``)."""
    scores, skipped = _read_done(work)
    if not scores:
        raise DataError(f"{coll.source}: no readable images to score")
    paths = sorted(scores, key=lambda p: (-scores[p], p))  # most anomalous first, ties by path
    s = np.array([scores[p] for p in paths])
    return Scored(paths, s, det.percentile(s), threshold, len(skipped), skipped)


def _write_sorted(path: Path, res: Scored, id_field: str) -> None:
    _rewrite(
        path,
        [id_field, *SCORE_FIELDS[1:]],
        [
            [p, repr(float(v)), f"{q:.2f}", int(v > res.threshold)]
            for p, v, q in zip(res.paths, res.scores, res.percentiles, strict=True)
        ],
    )


def _clear_parts(work: Path) -> None:
    for f in _parts(work, "scores") + _parts(work, "skipped"):
        f.unlink()


def collection_for(det, data: str | Path, exact: bool = False) -> Collection:
    """The folder or lmdb database ``data`` as ``rank_collection`` reads it for ``det``
    (resized to its images' shape; with ``exact``, as ``score`` reads it: images of another
    shape listed, not converted); a DataError at once where there is none, or no image file
    in the folder, before anything is written."""
    c, size = det.image_shape_[0], det.image_shape_[1]
    coll = Collection(data, channels=c, size=size, exact=exact)
    if coll.kind == "folder" and len(coll) == 0:
        raise DataError(f"{coll.path}: no image files (PNG, JPEG, ...) in it")
    return coll


def rank_collection(
    det,
    data: str | Path | Collection,
    out: str | Path,
    chunk: int = 256,
    fpr: float | None = None,
    n_gallery: int = 32,
    progress: bool = True,
) -> RankResult:
    """Score every image of ``data`` (a folder or an lmdb database, or its ``collection_for``
    ``det``) with fitted ``det``: ``out/scores.csv`` sorted most anomalous first,
    ``skipped.csv`` and the galleries."""
    out = Path(out)
    coll = data if isinstance(data, Collection) else collection_for(det, data)
    threshold = stream_scores(det, coll, out, chunk, fpr, progress, str(out))

    def merge() -> RankResult:
        res = _merged(det, coll, out, threshold)
        _write_sorted(out / "scores.csv", res, "path")
        _rewrite(out / "skipped.csv", ["path", "reason"], [[p, r] for p, r in res.skipped.items()])
        _clear_parts(out)
        _galleries(coll, res.paths, res.scores, res.percentiles, res.threshold, out, n_gallery)
        flagged = int((res.scores > res.threshold).sum())
        return RankResult(len(res.paths), res.n_skipped, res.threshold, out, flagged)

    return distributed.on_first(merge)


def score_collection(
    det,
    coll,
    out: str | Path,
    chunk: int = 256,
    fpr: float | None = None,
    progress: bool = True,
) -> RankResult:
    """``rank`` without galleries, into one CSV file ``out`` (id, score, percentile,
    flagged), sorted most anomalous first and written whole at the end; unreadable images
    are listed in ``<out stem>.skipped.csv``. Work in progress is kept in ``<out>.work/`` and
    resumed by a rerun; the folder goes once ``out`` is written."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"out: {out} is a folder; expected a CSV file to write")
    work = out.with_name(out.name + ".work")
    threshold = stream_scores(det, coll, work, chunk, fpr, progress, str(out))

    def merge() -> RankResult:
        res = _merged(det, coll, work, threshold)
        _write_sorted(out, res, "id")
        skipped = out.with_name(out.stem + ".skipped.csv")
        if res.skipped:
            _rewrite(skipped, ["id", "reason"], [[p, r] for p, r in res.skipped.items()])
        elif skipped.exists():
            skipped.unlink()
        shutil.rmtree(work)
        flagged = int((res.scores > res.threshold).sum())
        return RankResult(len(res.paths), res.n_skipped, res.threshold, out, flagged)

    return distributed.on_first(merge)


def _read_some(coll: Collection, ids, n: int) -> list[tuple[int, str, np.ndarray]]:
    """The first n readable images of ids, with their positions (a file may have changed
    since it was scored)."""
    out = []
    for i, p in ids:
        if len(out) == n:
            break
        try:
            out.append((i, p, coll.read(p)))
        except DataError:
            continue
    return out


def _galleries(coll: Collection, paths, scores, pct, threshold, out: Path, n: int) -> None:
    top = _read_some(coll, enumerate(paths), n)
    low = _read_some(coll, ((len(paths) - 1 - i, p) for i, p in enumerate(paths[::-1])), n)
    for name, items in (("most_anomalous.png", top), ("least_anomalous.png", low)):
        grid = image_grid(np.stack([img for _, _, img in items]), nrow=8, scale=2)
        atomic_write(out / name, lambda fh, g=grid: g.save(fh, format="PNG"))
    cards = {
        key: "\n".join(
            _card(i + 1, p, img, scores[i], pct[i], scores[i] > threshold) for i, p, img in items
        )
        for key, items in (("top", top), ("bottom", low))
    }
    page = _PAGE.format(
        title=html.escape(f"adgan rank: {Path(coll.source).name}"),
        summary=html.escape(
            f"{len(paths)} images ranked; threshold {threshold:.6g} "
            f"(anomaly score); {int((scores > threshold).sum())} flagged"
        ),
        **cards,
    )
    atomic_write(
        out / "gallery.html", lambda fh: fh.write(page.encode("utf-8", "backslashreplace"))
    )


def _card(rank: int, path: str, img: np.ndarray, score: float, pct: float, flagged: bool) -> str:
    pic = image_grid(img[None], nrow=1, pad=0, scale=max(1, 96 // img.shape[-1]))
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    cls = ' class="flagged"' if flagged else ""
    return (
        f'<figure{cls}><img src="data:image/png;base64,{data}" alt="">'
        f"<figcaption>#{rank} score {score:.4g} ({pct:.1f} pct)<br>"
        f"<code>{html.escape(path)}</code></figcaption></figure>"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; width: 140px; font-size: 11px; word-break: break-all; }}
figure img {{ image-rendering: pixelated; width: 96px; border: 2px solid #ccc; }}
figure.flagged img {{ border-color: #c00; }}
</style></head><body>
<h1>{title}</h1><p>{summary}. Percentiles place each score among the calibration (normal)
images; a red frame marks a score past the threshold.</p>
<h2>Most anomalous</h2><div class="grid">
{top}
</div>
<h2>Least anomalous</h2><div class="grid">
{bottom}
</div></body></html>
"""
