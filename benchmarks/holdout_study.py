"""Training-split holdout study: what the trained GANs cover, and the parts of adgan-plus.

Everything here reads the training split only. For a normal class, the GAN is the one the
benchmark trained (``BENCH/work/gan-<dataset>-c<class>-s<seed>/checkpoint.pt``, trained on the
class's training images less the 100 held out for calibration). The holdout is those 100
held-out normal images against ``--anomalies`` images drawn from the other classes' training
images; a third group, ``--trained`` images the GAN was trained on, shows how much of the
reconstruction gap is memorisation.

    python benchmarks/holdout_study.py --dataset mnist --classes 2,8 --bench docs/bench/mnist-cpu \
        --out holdout/mnist

For each class it writes ``scores-<dataset>-c<class>.npz`` (every variant's per-image scores,
resumable: a variant already there is not recomputed) and prints, and appends to
``holdout.csv``, one row per variant: holdout ROC-AUC (anomalous = positive) and, for the
searches, the mean final loss of each group and the mean loss at every step.

Variants: ``recon`` (the faithful search on the trained generator, bn_stats=seeds),
``recon-running`` (the same search with BatchNorm's running statistics, bn_stats=running),
``recon-ema0.99`` and ``recon-ema0.999`` (the same on the generator's moving averages;
for each search the holdout ROC-AUC after every step, of the mean over the seeds and of the
best seed, and the spread of the final loss over the seeds),
``rotation`` (adgan.selfsup on a copy of the critic's body), ``rotation+shift`` (the same net
also telling shifts, adgan-plus's ``translation``), ``rotation-sN`` and ``rotation+shift-sN``
(the same with N training steps), ``rotation-scratch`` (the same network trained from a
random start instead of the critic), and the standardised sums ``recon+rotation`` and
``recon-ema*+rotation`` (and with ``rotation+shift``; standardised on the held-out normal images,
as adgan-plus does; ``...:split`` standardised on half of them and judged on the other);
with ``--weights``, the same sums with the reconstruction part weighted (``W*recon+rotation``,
adgan-plus's ``reconstruction_weight``). For the rotation variants the loss of every
transformation and head is kept too, and two per-transformation rules are reported on the
split: ``...-z`` sums each transformation's loss standardised on the normal half, ``...-logz``
the same after a logarithm (alone and added to each search as above).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from transformation_rule import rules as transformation_rules

from adgan.base import as_images, split_calibration
from adgan.data import load_dataset
from adgan.files import write_csv
from adgan.search import SearchConfig, latent_search
from adgan.selfsup import RotationConfig, train_rotation_net, transformation_losses
from adgan.training import ema_generators, load_gan

FIELDS = ["dataset", "normal_class", "variant", "auc", "loss_trained", "loss_normal",
          "loss_anomalous", "loss_path_normal", "loss_path_anomalous", "auc_by_step",
          "auc_by_step_best_seed", "seed_sd_normal", "seed_sd_anomalous", "seconds"]  # fmt: skip


def groups(train, c: int, n_anom: int, n_trained: int, calibration: int, seed: int):
    X = train.images[train.labels == c]
    fit_idx, cal_idx = split_calibration(len(X), calibration, seed)
    others = np.flatnonzero(train.labels != c)
    pick = np.sort(np.random.default_rng([seed, 5]).choice(others, n_anom, replace=False))
    trained = np.sort(np.random.default_rng([seed, 6]).choice(fit_idx, n_trained, replace=False))
    return (
        as_images(X[trained]),
        as_images(X[cal_idx]),
        as_images(train.images[pick]),
        as_images(X[fit_idx]),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, choices=["mnist", "cifar10", "digits"])
    ap.add_argument("--classes", required=True, help="comma-separated normal classes")
    ap.add_argument("--bench", required=True, help="the benchmark folder holding work/gan-*")
    ap.add_argument("--data-root", default=os.environ.get("ADGAN_DATA"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--anomalies", type=int, default=300)
    ap.add_argument("--trained", type=int, default=100)
    ap.add_argument("--calibration", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="recon,rotation,recon-ema0.999,rotation-scratch")
    ap.add_argument("--rotation-steps", type=int, default=1000)
    ap.add_argument(
        "--weights",
        default="1",
        help="comma-separated weights of the reconstruction part in the sums",
    )
    args = ap.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dataset != "digits" and not args.data_root:
        ap.error("--data-root: give the folder holding the dataset (or set ADGAN_DATA)")
    train, _ = load_dataset(args.dataset, args.data_root)  # the test split is never read
    wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
    cfg = SearchConfig(bn_stats="seeds")
    for c in (int(x) for x in args.classes.split(",")):
        ck = Path(args.bench) / "work" / f"gan-{args.dataset}-c{c}-s{args.seed}" / "checkpoint.pt"
        gen, critic, blob = load_gan(ck)
        xt, xn, xa, xfit = groups(train, c, args.anomalies, args.trained, args.calibration,
                                  args.seed)  # fmt: skip
        y = np.r_[np.zeros(len(xn)), np.ones(len(xa))]
        npz = out / f"scores-{args.dataset}-c{c}.npz"
        have = dict(np.load(npz)) if npz.exists() else {}
        g = torch.Generator().manual_seed(args.seed + 7919)
        z0 = torch.randn(cfg.n_seeds, gen.config.latent_dim, generator=g)
        emas = None
        for v in wanted:
            # (a search recorded before the per-seed paths were kept is run again)
            if (
                v in have
                and not (v.startswith("recon") and v + ":path_min" not in have)
                and not (v.startswith("rotation") and v + ":per" not in have)
            ):
                continue
            t0 = time.perf_counter()
            if v.startswith("recon"):
                g_ = gen
                if "ema" in v:
                    emas = emas or ema_generators(blob, args.seed)
                    g_ = emas[float(v.split("ema")[1])]
                x = torch.from_numpy(np.concatenate([xt, xn, xa]))
                cfg_ = replace(cfg, bn_stats="running") if v == "recon-running" else cfg
                res = latent_search(g_, x, z0, cfg_, record=True, keep_z=False)
                # loss_path: (steps + 1, n, seeds); kept per image and step: the mean over the
                # seeds (the score), the best seed and the spread over the seeds
                have[v] = res.loss
                have[v + ":path"] = res.loss_path.mean(axis=2)
                have[v + ":path_min"] = res.loss_path.min(axis=2)
                have[v + ":path_sd"] = res.loss_path.std(axis=2)
            elif v.startswith("rotation"):
                # rotation[+shift]-sN: N training steps instead of --rotation-steps
                m = re.fullmatch(r"rotation(\+shift)?(?:-s(\d+))?|rotation-scratch", v)
                if m is None:
                    raise SystemExit(f"unknown variant {v}")
                steps = int(m.group(2)) if m.group(2) else args.rotation_steps
                rcfg = RotationConfig(steps=steps, translation=bool(m.group(1)))
                src = critic
                if v == "rotation-scratch":
                    from adgan.nets.dcgan import Critic

                    torch.manual_seed(args.seed)
                    src = Critic(critic.config)
                net = train_rotation_net(src, torch.from_numpy(xfit), rcfg, seed=args.seed)
                per = transformation_losses(net, torch.from_numpy(np.concatenate([xt, xn, xa])))
                have[v], have[v + ":per"] = per.sum(1), per
            else:
                raise SystemExit(f"unknown variant {v}")
            have[v + ":seconds"] = np.array(time.perf_counter() - t0)
            np.savez(npz, **have)
        report(args.dataset, c, have, len(xt), len(xn), y, out / "holdout.csv", weights)
    return 0


def std_on_normal(s: np.ndarray, nt: int, nn: int) -> np.ndarray:
    ref = s[nt : nt + nn]
    return (s - ref.mean()) / max(ref.std(), 1e-12)


def report(dataset, c, have, nt, nn, y, csv_path: Path, weights=(1.0,)) -> None:
    rows = []
    base = [k for k in have if ":" not in k]
    combos = {}
    half = nn // 2
    rules = {}  # per-transformation rules, standardised on the first half of the normal images
    for q in [k for k in base if k + ":per" in have]:
        by_rule = transformation_rules(have[q + ":per"], np.arange(nt, nt + half))
        for rule, name in (("z", "standardised"), ("logz", "standardised-log")):
            rules[f"{q}-{rule}"] = combos[f"{q}-{rule}:split"] = by_rule[name]
    for r in [k for k in base if k.startswith("recon")]:
        log_r = np.log(np.maximum(have[r], 1e-12))
        for q, part in rules.items():  # judged on the split only
            rec = std_on_normal(log_r, nt, half)
            combos[f"{r}+{q}:split"] = rec + std_on_normal(part, nt, half)
        for q in [k for k in base if k in ("rotation", "rotation+shift")]:
            # standardised on the held-out normal images, and on one half of them only (judged
            # on the other half: no image both weights the parts and is scored)
            full = std_on_normal(log_r, nt, nn), std_on_normal(have[q], nt, nn)
            split = std_on_normal(log_r, nt, half), std_on_normal(have[q], nt, half)
            for w in weights:  # adgan-plus's reconstruction_weight (1: the plain sum)
                name = f"{r}+{q}" if w == 1 else f"{w:g}*{r}+{q}"
                combos[name] = w * full[0] + full[1]
                combos[name + ":split"] = w * split[0] + split[1]
    for k in base:  # each part alone on the judged images, for comparison
        if k.startswith("recon") or k in ("rotation", "rotation+shift"):
            combos[f"{k}:split"] = have[k]
    judged = np.r_[np.zeros(half, bool), np.ones(len(y) - half, bool)]
    for name, s in [*((k, have[k]) for k in base), *combos.items()]:
        if name.endswith(":split"):  # the second half of the normal images, every anomaly
            auc = roc_auc_score(y[judged], s[nt:][judged])
        else:
            auc = roc_auc_score(y, s[nt:])
        row = {"dataset": dataset, "normal_class": c, "variant": name, "auc": round(auc, 4)}
        if name in base and name.startswith("recon"):
            p = have[name + ":path"]
            row.update(
                loss_trained=round(float(s[:nt].mean()), 2),
                loss_normal=round(float(s[nt : nt + nn].mean()), 2),
                loss_anomalous=round(float(s[nt + nn :].mean()), 2),
                loss_path_normal=" ".join(f"{v:.1f}" for v in p[:, nt : nt + nn].mean(1)),
                loss_path_anomalous=" ".join(f"{v:.1f}" for v in p[:, nt + nn :].mean(1)),
                auc_by_step=" ".join(f"{roc_auc_score(y, q[nt:]):.3f}" for q in p),
            )
            if name + ":path_min" in have:
                best, sd = have[name + ":path_min"], have[name + ":path_sd"]
                row.update(
                    auc_by_step_best_seed=" ".join(f"{roc_auc_score(y, q[nt:]):.3f}" for q in best),
                    seed_sd_normal=round(float(sd[-1, nt : nt + nn].mean()), 2),
                    seed_sd_anomalous=round(float(sd[-1, nt + nn :].mean()), 2),
                )
        if name in base:
            row["seconds"] = round(float(have[name + ":seconds"]), 1)
        rows.append(row)
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    old = []
    if csv_path.exists():  # earlier rows kept, under this version's columns
        with csv_path.open(newline="") as fh:
            old = [{k: v for k, v in r.items() if k in FIELDS} for r in csv.DictReader(fh)]
    write_csv(csv_path, FIELDS, ([r.get(k, "") for k in FIELDS] for r in [*old, *rows]))


if __name__ == "__main__":
    sys.exit(main())
