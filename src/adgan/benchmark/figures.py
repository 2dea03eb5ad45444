"""The paper's figures: ROC curves (Fig. 3), most / least anomalous images (Figs. 4-6) and
latent trajectories in a 2-dimensional latent space (Fig. 2).

Each ``plot_*`` function returns a ``matplotlib.figure.Figure`` (shown inline by a notebook)
and, given ``path``, also writes it as a PNG, atomically. The figures are built without
pyplot, so importing this module leaves matplotlib's backend as the caller set it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from adgan.files import atomic_write
from adgan.plots import plot_images

FPR_GRID = np.linspace(0.0, 1.0, 201)


def mean_roc(curves: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Average TPR over classes on a common FPR grid (each curve: y_true, anomaly score)."""
    tprs = []
    for y, s in curves:
        fpr, tpr, _ = roc_curve(y, s)
        tprs.append(np.interp(FPR_GRID, fpr, tpr))
    return np.mean(tprs, axis=0)


def line_styles(methods: list[str]) -> list[dict]:
    """A distinct (colour, dash) per method, ADGAN's line black and heavier: the ten colours
    of tab10, then the same colours dashed, dash-dotted, dotted."""
    colours = matplotlib.colormaps["tab10"].colors
    dashes = ["-", "--", "-.", ":"]
    out, i = [], 0
    for m in methods:
        if m == "adgan":
            out.append({"color": "black", "ls": "-", "lw": 2.0, "zorder": 3})
            continue
        out.append({"color": colours[i % 10], "ls": dashes[(i // 10) % 4], "lw": 1.4})
        i += 1
    return out


def _save(fig: Figure, path: str | Path | None, dpi: int) -> None:
    if path is not None:
        atomic_write(Path(path), lambda fh: fig.savefig(fh, format="png", dpi=dpi))


def plot_roc(
    per_method: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    aucs: dict[str, float],
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """Figure 3: each method's ROC curve averaged over normal classes (``per_method``: its
    (y_true, anomaly score) pairs, one per class), labelled with its AUC where ``aucs`` has
    one."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for (m, curves), style in zip(per_method.items(), line_styles(list(per_method)), strict=True):
        label = f"{m} ({aucs[m]:.3f})" if m in aucs else m
        ax.plot(FPR_GRID, mean_roc(curves), label=label, **style)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path, dpi=120)
    return fig


def plot_gallery(
    images: np.ndarray,
    scores: np.ndarray,
    n: int = 24,
    nrow: int = 8,
    path: str | Path | None = None,
) -> Figure:
    """Top: the n most anomalous images (by anomaly score), most anomalous first; bottom: the
    n least anomalous, least anomalous first (the layout of Figures 4 to 6), with a blank row
    between. The PNG holds the images pixel for pixel, each shown twice its size."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    n = min(n, len(order) // 2)
    top, bottom = images[order[:n]], images[order[::-1][:n]]
    pad = -(-n // nrow) * nrow - n  # fill the last row of each block
    blank = np.full(
        (nrow + pad, *images.shape[1:]),
        255 if images.dtype == np.uint8 else 1.0,
        dtype=images.dtype,
    )
    return plot_images(np.concatenate([top, blank, bottom]), nrow=nrow, scale=2, path=path)


def plot_trajectories(
    z_path: np.ndarray,
    loss_path: np.ndarray,
    anomalous: np.ndarray,
    steps_to_show: tuple[int, ...] | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Figure 2: the latent coordinates of each image's search at several steps, normal and
    anomalous images in two colours, point size = reconstruction loss.

    z_path (steps + 1, n, seeds, 2), loss_path (steps + 1, n, seeds), anomalous (n,) bool.
    """
    T = z_path.shape[0]
    steps_to_show = steps_to_show or tuple(sorted({0, T // 2, T - 1}))
    fig = Figure(figsize=(4 * len(steps_to_show), 4))
    axes = fig.subplots(1, len(steps_to_show), squeeze=False)
    scale = 60.0 / max(float(np.percentile(loss_path, 95)), 1e-12)
    for ax, t in zip(axes[0], steps_to_show, strict=True):
        for flag, colour, label in ((False, "tab:blue", "normal"), (True, "tab:red", "anomalous")):
            sel = anomalous == flag
            z = z_path[t, sel, 0]  # first seed of each image: (n_sel, 2)
            ax.scatter(
                z[:, 0],
                z[:, 1],
                s=np.clip(loss_path[t, sel, 0] * scale, 1, 200),
                c=colour,
                alpha=0.5,
                label=label,
                linewidths=0,
            )
        ax.set(title=f"t = {t}", xlabel="z1", ylabel="z2")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return fig
