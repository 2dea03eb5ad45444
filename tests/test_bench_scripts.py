"""The scripts that read a benchmark folder (benchmarks/score_correlation.py,
benchmarks/bench_summary.py, benchmarks/holdout_study.py, benchmarks/transformation_rule.py),
on tiny files in the benchmark's formats."""

import subprocess
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "score_correlation.py"


def test_scores_that_order_items_alike_correlate(tmp_path):
    (tmp_path / "scores").mkdir()
    rng = np.random.default_rng(0)
    index = rng.permutation(50)
    base = rng.normal(size=50)
    files = {
        0: (index, base),  # class 0
        1: (index[::-1], base[::-1] * 3 + 1),  # the same order, items listed otherwise
        2: (index, -base),  # the reverse order
    }
    for c, (idx, s) in files.items():
        np.savez(tmp_path / "scores" / f"cifar10-c{c}-adgan-r0.npz", y=np.zeros(50), score=s,
                 index=idx)  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--bench", str(tmp_path), "--methods", "adgan"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "classes 0, 1: Spearman 1.000 over 50 common test items" in out
    assert "classes 0, 2: Spearman -1.000" in out


def test_summary_sets_each_method_beside_the_papers_mean_on_its_classes(tmp_path):
    import csv

    from adgan.benchmark.runner import FIELDS

    rows = [("adgan", 0, 0, 0.7, 100.0), ("adgan", 1, 0, 0.5, 300.0), ("kde", 0, 0, 0.6, 10.0),
            ("adgan", 0, 1, 0.8, 100.0), ("adgan", 1, 1, 0.6, 300.0)]  # fmt: skip
    with (tmp_path / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for m, c, run, auc, fit in rows:
            w.writerow({"dataset": "cifar10", "normal_class": c, "method": m, "run": run,
                        "seed": 0, "auc": auc, "fit_seconds": fit, "score_seconds": 2,
                        "machine": "x86_64, 1 threads"})  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_summary.py"), "--bench", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # Table 1, CIFAR-10: adgan 0.661 and 0.435 on classes 0 and 1, kde 0.705 on class 0
    # two runs: means over the classes 0.6 and 0.7, so 0.65 ± their standard deviation
    assert "| adgan | 0,1 | 2 | 0.6500 ± 0.0707 | 0.548 | 200 | 2.0 | x86_64, 1 threads |" in out
    assert "| kde | 0 | 1 | 0.6000 | 0.705 | 10 |" in out


def test_summary_bootstrap_gives_the_spread_the_test_draw_puts_on_a_mean(tmp_path):
    """A perfect ranking has no spread over resampled items; a noisy one has some; a method
    whose scores were not kept says so."""
    import csv

    from adgan.benchmark.runner import FIELDS

    sys.path.insert(0, str(BENCHMARKS))
    from bench_summary import auc
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n = 200
    y = (rng.random(n) < 0.8).astype(float)  # 1 = anomalous, as the benchmark stores it
    index = rng.permutation(1000)[:n]
    (tmp_path / "scores").mkdir()
    with (tmp_path / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for c in (0, 1):
            for m, score in (("ocsvm", y + 0.01 * rng.random(n)),
                             ("kde", y + rng.normal(0, 1, n))):  # fmt: skip
                order = rng.permutation(n)  # each file lists the same items in its own order
                np.savez(tmp_path / "scores" / f"mnist-c{c}-{m}-r0.npz", y=y[order],
                         score=score[order], index=index[order])  # fmt: skip
                a = roc_auc_score(y, score)
                assert abs(auc(y, score) - a) < 1e-12
                w.writerow({"dataset": "mnist", "normal_class": c, "method": m, "run": 0,
                            "seed": 0, "auc": a, "fit_seconds": 1, "score_seconds": 1,
                            "machine": "x"})  # fmt: skip
        w.writerow({"dataset": "mnist", "normal_class": 0, "method": "gmm", "run": 0,
                    "seed": 0, "auc": 0.5, "fit_seconds": 1, "score_seconds": 1,
                    "machine": "x"})  # fmt: skip
    cmd = [sys.executable, str(BENCHMARKS / "bench_summary.py"), "--bench", str(tmp_path),
           "--bootstrap", "200"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "| method | classes | runs | our mean | test-draw sd |" in out
    assert "| ocsvm | 0,1 | 1 | 1.0000 | 0.0000 |" in out
    kde = next(line for line in out.splitlines() if line.startswith("| kde |"))
    sd = float(kde.split("|")[5])
    # about the spread of one AUC over 160 anomalies and 40 normal images
    assert 0.01 < sd < 0.06, kde
    assert "| gmm | 0 | 1 | 0.5000 | – |" in out


def test_summary_versus_counts_the_classes_a_method_wins(tmp_path):
    import csv

    from adgan.benchmark.runner import FIELDS

    rows = [("adgan-plus", 0, 0.9), ("kde", 0, 0.8), ("gmm", 0, 0.85),
            ("adgan-plus", 1, 0.7), ("kde", 1, 0.75), ("adgan", 1, 0.99),
            ("adgan-plus", 2, 0.95)]  # fmt: skip
    with (tmp_path / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for m, c, auc in rows:
            w.writerow({"dataset": "mnist", "normal_class": c, "method": m, "run": 0,
                        "seed": 0, "auc": auc, "fit_seconds": 1, "score_seconds": 1,
                        "machine": "x"})  # fmt: skip
    cmd = [sys.executable, str(BENCHMARKS / "bench_summary.py"), "--bench", str(tmp_path),
           "--versus", "adgan-plus"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "| 0 | 0.9000 | gmm 0.8500 | yes |" in out
    assert "| 1 | 0.7000 | kde 0.7500 | no |" in out  # adgan is not a baseline
    assert "| 2 | 0.9500 | – | – |" in out  # no baseline rows yet: not judged
    assert "adgan-plus best or tied on 1 of 2 classes with baseline rows" in out
    out = subprocess.run([*cmd, "--tie", "0.06"], capture_output=True, text=True, check=True)
    assert "adgan-plus best or tied on 2 of 2 classes with baseline rows" in out.stdout


def test_transformation_rule_discounts_a_transformation_the_normal_images_vary_on(tmp_path):
    """A loss that spreads widely over normal and anomalous images alike drowns the plain sum;
    standardised on the normal images it weighs no more than the informative ones."""
    rng = np.random.default_rng(0)
    n_trained, n_normal, n_anom = 4, 40, 60
    per = rng.normal(0.1, 0.02, size=(n_trained + n_normal + n_anom, 108))
    per[n_trained + n_normal :] += 0.05  # every transformation a little harder for anomalies
    per[:, 0] = rng.uniform(0, 50, size=len(per))  # one that says nothing, loudly
    np.savez(tmp_path / "scores-mnist-c3.npz", **{"rotation+shift": per.sum(1),
             "rotation+shift:per": per})  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "transformation_rule.py"), "--scores", str(tmp_path),
         "--dataset", "mnist", "--classes", "3", "--trained", str(n_trained), "--calibration",
         str(n_normal), "--search", ""],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    auc = {line.split(": alone ")[0].split()[-1]: float(line.split(": alone ")[1])
           for line in out.splitlines() if line.startswith("mean over")}  # fmt: skip
    assert auc["standardised"] > 0.95 and auc["sum"] < 0.8, out
    bad = subprocess.run(
        [sys.executable, str(BENCHMARKS / "transformation_rule.py"), "--scores", str(tmp_path),
         "--dataset", "mnist", "--classes", "4"], capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0 and "scores-mnist-c4.npz not found" in bad.stderr


def test_holdout_study_weighs_the_reconstruction_part(tmp_path):
    """benchmarks/holdout_study.py on a tiny digits GAN trained by the benchmark: the weighted
    sums are written, weight 0 is the rotation score's own ranking, the search with running
    BatchNorm statistics is the library's search under bn_stats="running", and a rerun reads
    the kept scores instead of searching again."""
    import csv

    from adgan.benchmark.runner import run_benchmark
    from adgan.presets import Preset

    tiny = Preset(name="tiny", protocol={"n_test": 20}, params=dict(
        objective="wgan-gp", iterations=3, width=4, latent_dim=6, n_seeds=2, steps=2,
        batch_size=16, calibration=10))  # fmt: skip
    run_benchmark("digits", [0], ["adgan"], tiny, tmp_path / "bench", progress=False,
                  trajectories=False)  # fmt: skip
    cmd = [sys.executable, str(BENCHMARKS / "holdout_study.py"), "--dataset", "digits",
           "--classes", "0", "--bench", str(tmp_path / "bench"), "--out", str(tmp_path / "h"),
           "--anomalies", "30", "--trained", "5", "--calibration", "10",
           "--variants", "recon,recon-running,rotation", "--rotation-steps", "3",
           "--weights", "0,1,2"]  # fmt: skip
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    with (tmp_path / "h" / "holdout.csv").open(newline="") as fh:
        auc = {r["variant"]: float(r["auc"]) for r in csv.DictReader(fh)}
    for name in ("0*recon+rotation", "recon+rotation", "2*recon+rotation",
                 "0*recon+rotation:split", "2*recon+rotation:split"):  # fmt: skip
        assert 0 <= auc[name] <= 1, name
    assert auc["0*recon+rotation"] == auc["rotation"]
    with np.load(tmp_path / "h" / "scores-digits-c0.npz") as z:
        kept = {k: z[k].copy() for k in z.files}
    assert 0 <= auc["recon-running"] <= 1 and "recon-running+rotation" in auc
    # the same images and seeds searched by the library with the running statistics
    sys.path.insert(0, str(BENCHMARKS))
    import torch
    from holdout_study import groups

    from adgan.data import load_dataset
    from adgan.search import SearchConfig, latent_search
    from adgan.training import load_gan

    gen, _, _ = load_gan(tmp_path / "bench" / "work" / "gan-digits-c0-s0" / "checkpoint.pt")
    train, _ = load_dataset("digits")
    xt, xn, xa, _ = groups(train, 0, 30, 5, 10, 0)
    cfg = SearchConfig(bn_stats="running")  # the study's search: the paper's settings
    z0 = torch.randn(cfg.n_seeds, 6, generator=torch.Generator().manual_seed(7919))
    x = torch.from_numpy(np.concatenate([xt, xn, xa]))
    searched = latent_search(gen, x, z0, cfg).loss
    np.testing.assert_allclose(kept["recon-running"], searched, rtol=1e-5)
    assert not np.allclose(kept["recon-running"], kept["recon"])
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    with np.load(tmp_path / "h" / "scores-digits-c0.npz") as z:
        # the seconds each variant took are kept too: a variant run again would change them
        assert all(np.array_equal(z[k], kept[k]) for k in kept)


def test_baseline_holdout_on_a_training_pool(tmp_path):
    """benchmarks/baseline_holdout.py on digits: a pool held out of every fit, the mean-image
    distance tells the normal class's pool images from the others, a rerun reads the scores
    it kept, and a method that chooses on labels is refused by name."""
    import csv

    sys.path.insert(0, str(BENCHMARKS))
    from baseline_holdout import pool_indices, total_variation

    x = np.random.default_rng(0).random((3, 2, 4, 5))
    plain = [
        (np.abs(np.diff(im, axis=2)).mean() + np.abs(np.diff(im, axis=1)).mean()) / 2 for im in x
    ]
    np.testing.assert_allclose(total_variation(x), plain)
    labels = np.repeat(np.arange(3), 10)
    pool = pool_indices(labels, 4, 0)
    assert np.array_equal(np.bincount(labels[pool]), [4, 4, 4]) and len(set(pool)) == 12

    cmd = [sys.executable, str(BENCHMARKS / "baseline_holdout.py"), "--dataset", "digits",
           "--preset", "smoke", "--classes", "0,1", "--methods", "mean-image",
           "--per-class", "20", "--out", str(tmp_path)]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader((tmp_path / "holdout.csv").open()))
    assert [(r["normal_class"], r["method"]) for r in rows] == [("0", "mean-image"),
                                                                 ("1", "mean-image")]  # fmt: skip
    assert all(float(r["holdout_auc"]) > 0.8 for r in rows)
    assert sorted(p.name for p in tmp_path.glob("scores-*.npz")) == [
        "scores-digits-c0-mean-image.npz", "scores-digits-c1-mean-image.npz"]  # fmt: skip
    again = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert again.splitlines()[:2] == first.splitlines()[:2]
    bad = subprocess.run([*cmd[:-6], "--methods", "kde", "--out", str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "--methods: kde" in bad.stderr


def test_search_speed_counts_the_state_each_variant_moves():
    """search_speed.py's traffic bound: 128 bytes per parameter and pair over 5 steps without
    the compiled kernel, 8 fewer where it skips the last step's moments (its convolutions),
    and the bfloat16 state of "mixed" about half of that."""
    import pytest
    import torch

    from adgan.nets.dcgan import DCGANConfig, Generator
    from adgan.search import mixed, native
    from adgan.search.batched import generator_parameters

    lib = native.load(torch.float32)
    if lib is None:
        pytest.skip("no compiled kernel here (no C compiler)")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from search_speed import state_bytes
    finally:
        sys.path.remove(str(BENCHMARKS))
    gen = Generator(DCGANConfig(image_size=32, channels=3, latent_dim=16, width=8))
    params = generator_parameters(gen)
    n = sum(p.numel() for p in params)
    conv = sum(params[j].numel() for j in mixed.mixed_layers(gen, lib))
    assert 0 < conv < n
    assert state_bytes(gen, 5, "torch") == 128 * n
    assert state_bytes(gen, 5, "exact") == 128 * n - 8 * conv
    # bfloat16, per convolution parameter: the first step writes 6 bytes, the next three read
    # 2 (forward) + 6 and write 6, the last writes D alone (2 + 6 + 2), the last forward 2
    assert state_bytes(gen, 5, "mixed") == 128 * (n - conv) + (6 + 3 * 14 + 10 + 2) * conv
    # one step, the first and the last: its compiled convolutions write the weights alone
    assert state_bytes(gen, 1, "exact") == 16 * n - 8 * conv
    assert state_bytes(gen, 0, "exact") == 0
