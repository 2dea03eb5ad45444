"""Reference scores of every registered detector on fixed tiny data, and files written by
this version of the code (a GAN work folder and saved GAN-based detectors), for
tests/test_reference_scores.py: refactors must leave scores unchanged (to float rounding)
and keep older files readable.

    python tests/make_reference_scores.py      # rewrites tests/data/reference_scores.json
                                               # and tests/data/legacy/
    python tests/make_reference_scores.py --add  # records only cases not yet recorded
                                                 # (a newly registered detector)

Run it only on purpose: the point of the stored values is that they come from the code as
it was when they were recorded (the commit is written into the file).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
DATA = HERE / "data"
REFERENCE = DATA / "reference_scores.json"
LEGACY = DATA / "legacy"

# tiny settings: seconds, not accuracy
GAN = dict(
    iterations=4,
    width=8,
    latent_dim=8,
    batch_size=16,
    n_seeds=4,
    steps=3,
    calibration=10,
    anogan_steps=3,
    anogan_lr=0.05,
    device="cpu",
    random_state=0,
)
AE = dict(epochs=2, latent_dim=4, width=4, batch_size=16, calibration=0.1)
CLASSIC = dict(
    calibration=0,  # the training images (the default until 2026-12-02): the scores' reference
    pca_dims=(4, 8),
    n_components_grid=(2, 3),
    alexnet_weights="random",
    alexnet_size=63,
    random_state=0,
    device="cpu",
)

#: case name -> (registered detector, extra parameters, fit with labels)
CASES: dict[str, tuple[str, dict, bool]] = {
    "adgan": ("adgan", {}, False),
    "adgan[seeds,wgan-gp]": ("adgan", {"bn_stats": "seeds", "objective": "wgan-gp"}, False),
    "adgan[bmm]": ("adgan", {"kernel": "bmm"}, False),
    "adgan-plus": ("adgan-plus", {"rotation_steps": 3, "rotation_batch": 8}, False),
    "prior": ("prior", {}, False),
    "prior[seeds]": ("prior", {"bn_stats": "seeds"}, False),
    "discriminator": ("discriminator", {}, False),
    "anogan": ("anogan", {}, False),
    "anogan[labels]": ("anogan", {"anogan_steps": [0, 2, 5]}, True),
    "dcae": ("dcae", {}, False),
    "vae": ("vae", {}, False),
    "mean-image": ("mean-image", {}, False),
    "kde": ("kde", {}, False),
    "kde[labels]": ("kde", {}, True),
    "ocsvm": ("ocsvm", {}, False),
    "iforest": ("iforest", {}, False),
    "gmm": ("gmm", {}, False),
    "gmm[labels]": ("gmm", {}, True),
    "kde-alexnet": ("kde-alexnet", {}, False),
    "ocsvm-alexnet": ("ocsvm-alexnet", {}, False),
    "iforest-alexnet": ("iforest-alexnet", {}, False),
    "gmm-alexnet": ("gmm-alexnet", {}, False),
}

#: cases whose fitted detector is saved under tests/data/legacy/ (files of this version)
SAVED = ("adgan", "prior[seeds]", "discriminator", "anogan[labels]")


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(normal training images, labelled training images, their labels, test images): digit
    0's training images of the fixed digits split; with 20 other digits' training images
    labelled -1; the first 16 test images (all classes)."""
    from adgan.data import load_digits

    train, test = load_digits()
    normal = train.images[train.labels == 0]
    others = train.images[train.labels != 0][:20]
    X_lab = np.concatenate([normal, others])
    y_lab = np.r_[np.ones(len(normal), int), -np.ones(len(others), int)]
    return normal, X_lab, y_lab, test.images[:16]


def params(case: str, work_dir: str | None = None) -> tuple[str, dict, bool]:
    """(registered name, parameters, fit with labels) of a case."""
    name, extra, labelled = CASES[case]
    if name in ("adgan", "adgan-plus", "prior", "discriminator", "anogan"):
        p = dict(GAN)
    elif name in ("dcae", "vae"):
        p = dict(AE, random_state=0, device="cpu")
    elif name == "mean-image":
        p = {"random_state": 0, "calibration": 0}
    else:
        p = dict(CLASSIC)
    p.update(extra)
    if work_dir is not None:
        p["work_dir"] = work_dir
    return name, p, labelled


def fit(case: str, work_dir: str | None = None):
    from adgan.registry import make_detector

    normal, X_lab, y_lab, _ = data()
    name, p, labelled = params(case, work_dir)
    det = make_detector(name, **p)
    return det.fit(X_lab, y_lab) if labelled else det.fit(normal)


def compute(cases=None) -> dict[str, dict]:
    """{case: {"anomaly_score": [...], "offset": ...}} for the fixed test images."""
    x_test = data()[3]
    out = {}
    for case in cases or CASES:
        det = fit(case)
        out[case] = {
            "anomaly_score": [float(v) for v in det.anomaly_score(x_test)],
            "offset": float(det.offset_),
        }
    return out


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "../src"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    if dirty:
        sys.exit("src/ has uncommitted changes: record reference values from a commit")
    if argv == ["--add"]:
        # new cases join the record with the commit that computed them; the recorded
        # values of the old cases stay as they were
        record = json.loads(REFERENCE.read_text())
        new = [c for c in CASES if c not in record["scores"]]
        record["scores"].update(compute(new))
        record.setdefault("added", {}).update({c: commit for c in new})
        REFERENCE.write_text(json.dumps(record, indent=1) + "\n")
        print(f"added {new} to {REFERENCE}")
        return
    if argv:
        sys.exit("usage: make_reference_scores.py [--add]")
    DATA.mkdir(exist_ok=True)
    record = {
        "about": (
            f"Generated at commit {commit} by tests/make_reference_scores.py (one torch "
            "thread); tests/test_reference_scores.py compares every registered detector's "
            "scores with these."
        ),
        "commit": commit,
        "scores": compute(),
    }
    REFERENCE.write_text(json.dumps(record, indent=1) + "\n")
    # files of this version: a GAN work folder and saved detectors
    shutil.rmtree(LEGACY, ignore_errors=True)
    LEGACY.mkdir(parents=True)
    (LEGACY / "README.md").write_text(
        f"Written at commit {commit} by tests/make_reference_scores.py: a GAN work folder "
        "(`gan/`, the case `adgan`'s settings) and saved detectors, which later versions "
        "must still read.\n"
    )
    fit("adgan", work_dir=str(LEGACY / "gan"))
    (LEGACY / "gan" / "samples.png").unlink()
    for case in SAVED:
        fit(case).save(LEGACY / f"{case}.pt")
    print(f"wrote {REFERENCE} and {LEGACY}")


if __name__ == "__main__":
    main(sys.argv[1:])
