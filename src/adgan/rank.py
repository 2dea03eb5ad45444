"""Rank an unlabelled image collection by anomaly score, streaming and resumable.

Images are read and scored in chunks; each chunk's scores are appended to
``scores.csv`` (and unreadable images to ``skipped.csv`` with the reason) before the next
chunk starts, so an interrupted run resumes where it stopped and loses nothing finished.
At the end ``scores.csv`` is rewritten sorted, most anomalous first, and the galleries are
drawn from the images of the top and bottom of the ranking alone.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def threshold_for(det, fpr: float | None) -> float:
    """Anomaly-score cut-off from the calibration (normal) images alone: the detector's own
    (its contamination quantile), or the one that flags a fraction ``fpr`` of them."""
    if fpr is None:
        return -float(det.offset_)
    if not 0.0 < fpr < 1.0:
        raise ConfigError(f"fpr: expected a fraction between 0 and 1, got {fpr}")
    return float(np.quantile(-det.calibration_scores_, 1.0 - fpr))


def _read_done(out: Path) -> tuple[dict[str, float], dict[str, str]]:
    """The finished rows of an earlier run; a row whose score is not a finite number (a
    file edited by hand) is left out, and its image scored again."""
    scores = {}
    for r in complete_rows(out / "scores.csv"):
        try:
            score = float(r["score"])
        except ValueError:
            continue
        if math.isfinite(score):
            scores[csv_untext(r["path"])] = score
    skipped = {csv_untext(r["path"]): r["reason"] for r in complete_rows(out / "skipped.csv")}
    return scores, skipped


def _meta(det, coll: Collection) -> dict:
    """What a ranking folder was made with: the detector and the collection."""
    import json

    params = json.dumps(det.get_params(), sort_keys=True, default=str)
    model = fingerprint(params, np.asarray(det.calibration_scores_, dtype=np.float64))
    return {"model": model, "data": str(coll.path.resolve())}


def _check_meta(out: Path, meta: dict) -> None:
    path = out / "meta.json"
    if not path.exists():
        write_json(path, meta)
        return
    old = read_json_object(path, "ranking folder's record of its model and collection")
    if differences(old, meta):
        raise ConfigError(
            f"{out} holds a ranking by another model or of another collection "
            f"({old.get('data')}); use another output folder"
        )


def _rewrite(path: Path, fields: list[str], rows: list[list]) -> None:
    """Rows whose first cell is a path (made safe for spreadsheets), written atomically."""
    write_csv(path, fields, ([csv_text(r[0]), *r[1:]] for r in rows))


def rank_collection(
    det,
    data: str | Path,
    out: str | Path,
    chunk: int = 256,
    fpr: float | None = None,
    n_gallery: int = 32,
    progress: bool = True,
) -> RankResult:
    """Score every image of ``data`` (a folder or an lmdb database) with fitted ``det``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c, size = det.image_shape_[0], det.image_shape_[1]
    coll = Collection(data, channels=c, size=size)
    threshold = threshold_for(det, fpr)
    _check_meta(out, _meta(det, coll))
    scores, skipped = _read_done(out)
    present = set(coll.ids())  # rows of files gone since the last run are dropped
    scores = {p: s for p, s in scores.items() if p in present}
    skipped = {p: r for p, r in skipped.items() if p in present}
    # start both files clean (drops a half-written last line), keeping finished rows
    _rewrite(out / "scores.csv", ["path", "score"], [[p, repr(s)] for p, s in scores.items()])
    _rewrite(out / "skipped.csv", ["path", "reason"], [[p, r] for p, r in skipped.items()])
    bar = progress_bar(progress, len(coll), "rank", "img", initial=len(scores) + len(skipped))
    batch_ids: list[str] = []
    batch: list[np.ndarray] = []
    enc = {"newline": "", "encoding": "utf-8", "errors": "surrogateescape"}
    with (out / "scores.csv").open("a", **enc) as sf, (out / "skipped.csv").open("a", **enc) as kf:
        sw, kw = csv.writer(sf), csv.writer(kf)

        def flush() -> None:
            if not batch:
                return
            s = det.anomaly_score(np.stack(batch))
            sw.writerows([[csv_text(p), repr(float(v))] for p, v in zip(batch_ids, s, strict=True)])
            sf.flush()
            os.fsync(sf.fileno())
            scores.update(zip(batch_ids, map(float, s), strict=True))
            bar.update(len(batch))
            batch_ids.clear()
            batch.clear()

        for id_ in coll.ids():
            if id_ in scores or id_ in skipped:
                continue
            try:
                batch.append(coll.read(id_))
                batch_ids.append(id_)
            except DataError as exc:
                reason = getattr(exc, "reason", str(exc))
                kw.writerow([csv_text(id_), reason])
                kf.flush()
                skipped[id_] = reason
                bar.update(1)
            if len(batch) >= chunk:
                flush()
        flush()
    bar.close()
    if not scores:
        raise DataError(f"{data}: no readable images to rank")
    paths = sorted(scores, key=lambda p: (-scores[p], p))  # most anomalous first, ties by path
    s = np.array([scores[p] for p in paths])
    pct = det.percentile(s)
    _rewrite(
        out / "scores.csv",
        SCORE_FIELDS,
        [
            [p, repr(float(v)), f"{q:.2f}", int(v > threshold)]
            for p, v, q in zip(paths, s, pct, strict=True)
        ],
    )
    _galleries(coll, paths, s, pct, threshold, out, n_gallery)
    return RankResult(len(paths), len(skipped), threshold, out)


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
        title=html.escape(f"adgan rank: {coll.path.name}"),
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
