"""Strict configuration: presets and detector parameters are checked before any work, and
errors name the key or parameter, the file, and what is accepted; the command line speaks of
its flags."""

import math

import numpy as np
import pytest

from adgan.cli import main
from adgan.detectors.gan_based import GAN_CONSTRAINTS
from adgan.errors import ConfigError
from adgan.gan import FittedGAN
from adgan.presets import load_preset
from adgan.registry import DETECTORS, GAN_DETECTORS, detector_params, load_detector, make_detector

GOOD = """
description = "tests"
dataset = "digits"
[params]
iterations = 3
width = 4
latent_dim = 6
n_seeds = 2
steps = 1
calibration = 4
"""


def _preset(tmp_path, text):
    p = tmp_path / "p.toml"
    p.write_text(text)
    return p


def test_a_good_preset_loads(tmp_path):
    assert load_preset(str(_preset(tmp_path, GOOD))).params["iterations"] == 3


@pytest.mark.parametrize(
    "line,needles",
    [
        (
            "iteratons = 500",
            ["unknown parameter 'iteratons'", "[params]", "accepted:", "iterations"],
        ),
        ('iterations = "500"', ["[params] iterations must be an integer >= 0", "'500'"]),
        ("iterations = -5", ["iterations must be an integer >= 0", "-5"]),
        ("lr_z = -0.5", ["lr_z must be a number >= 0"]),
        ("lr_z = nan", ["lr_z must be", "nan"]),
        ("calibration = -1", ["calibration must be an integer >= 0 or a fraction in [0, 1)"]),
        ("bn_stats = 'batch'", ["bn_stats must be one of 'running', 'seeds'"]),
        ("pca_dims = [0, 10]", ["pca_dims must be a non-empty list of integers >= 1"]),
    ],
)
def test_a_bad_preset_value_names_the_key_the_file_and_what_is_accepted(tmp_path, line, needles):
    key = line.split(" =")[0]  # in place of the good preset's own value
    text = "\n".join(ln for ln in GOOD.splitlines() if ln.split(" =")[0] != key)
    path = _preset(tmp_path, text + "\n" + line + "\n")
    with pytest.raises(ConfigError) as err:
        load_preset(str(path))
    msg = str(err.value)
    assert msg.startswith(f"preset {path}: ") and "\n" not in msg
    for needle in needles:
        assert needle in msg


def test_a_bad_key_in_a_method_table_or_the_top_level(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown parameter 'anogan_step' in \[method.anogan\]"):
        load_preset(str(_preset(tmp_path, GOOD + "[method.anogan]\nanogan_step = 5\n")))
    with pytest.raises(ConfigError, match="anogan_steps must be"):
        load_preset(str(_preset(tmp_path, GOOD + "[method.anogan]\nanogan_steps = [-1]\n")))
    with pytest.raises(ConfigError, match="unknown key 'param'"):
        load_preset(str(_preset(tmp_path, GOOD + "[param]\nx = 1\n")))


def test_the_command_line_names_the_flag(tmp_path, capsys):
    path = _preset(tmp_path, GOOD + "iteratons = 500\n")
    assert main(["evaluate", "--preset", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"adgan evaluate: error: --preset {path}: unknown parameter 'iteratons'")
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i in range(6):
        Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(images / f"{i}.png")
    argv = ["train", "--data", str(images), "--preset", str(_preset(tmp_path, GOOD))]
    assert main([*argv, "--iterations", "-5", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "adgan train: error: --iterations: expected an integer >= 0, got -5"
    assert not (tmp_path / "run").exists()  # nothing was done
    assert main([*argv, "--device", "tpu", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "error: --device: expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name,param,value,accepted",
    [
        ("adgan", "lr_z", -0.25, "a number >= 0"),
        ("adgan", "lr_theta", math.nan, "a number >= 0"),
        ("adgan", "iterations", -1, "an integer >= 0"),
        ("adgan", "iterations", 2.5, "an integer >= 0"),
        ("adgan", "n_seeds", 0, "an integer >= 1"),
        ("adgan", "calibration", -1, "an integer >= 0 or a fraction in [0, 1)"),
        ("adgan", "calibration", 1.5, "an integer >= 0 or a fraction in [0, 1)"),
        ("adgan", "objective", "gan", "one of 'wgan', 'wgan-gp'"),
        ("adgan", "lr", -1e-4, "a number > 0 or None"),
        ("prior", "memory_mb", math.inf, "a number > 0"),
        ("discriminator", "contamination", 1.0, "a number in [0, 1)"),
        ("anogan", "anogan_lr", -0.01, "a number >= 0"),
        ("anogan", "anogan_lambda", 2.0, "a number in [0, 1]"),
        ("dcae", "lr", 0.0, "a number > 0"),
        ("vae", "n_elbo_samples", 0, "an integer >= 1"),
        ("vae", "decoder_std", -1.0, "a number > 0 or None"),
        ("kde", "bandwidths", (1.0, -2.0), "a non-empty list of numbers > 0"),
        ("gmm", "n_components_grid", (), "a non-empty list of integers >= 1"),
        ("mean-image", "random_state", -3, "an integer >= 0"),
        ("mean-image", "verbose", None, None),  # not a parameter: ignored by make_detector
    ],
)
def test_detector_parameters_are_checked_in_fit_before_any_work(
    tmp_path, name, param, value, accepted
):
    work = tmp_path / "work"
    det = make_detector(name, **{param: value, "work_dir": str(work), "device": "cpu"})
    X = np.zeros((12, 1, 8, 8), np.uint8)
    if accepted is None:
        det.fit(X)
        return
    with pytest.raises(ConfigError) as err:
        det.fit(X)
    assert str(err.value) == f"{param}: expected {accepted}, got {value!r}"
    assert not work.exists()  # nothing trained


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_parameter_has_a_constraint_its_default_meets(name):
    cls = DETECTORS[name][0]
    params = detector_params(name)
    assert set(cls.param_constraints) == set(params)
    for k, v in params.items():
        assert cls.param_constraints[k].accepts(v), (name, k, v)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_each_detector_states_its_registered_name(name):
    assert make_detector(name).detector_name == name


def test_the_gan_based_detectors_take_the_gans_parameters_with_the_same_defaults():
    # adgan-plus alone departs from them: by default it trains with the gradient penalty,
    # while the paper's weight clipping stays the default of the faithful detectors
    first = detector_params(GAN_DETECTORS[0])
    deviations = {"adgan-plus": {"objective": "wgan-gp"}}
    for name in GAN_DETECTORS:
        p = detector_params(name)
        expected = {k: first[k] for k in GAN_CONSTRAINTS} | deviations.get(name, {})
        assert {k: p[k] for k in GAN_CONSTRAINTS} == expected
    assert first["objective"] == "wgan"
    assert "n_seeds" not in detector_params("discriminator")
    assert "n_seeds" not in detector_params("anogan")


def test_the_fitted_gan_round_trips_with_its_moving_averages(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (20, 1, 8, 8)).astype(np.uint8)
    det = make_detector(
        "adgan", iterations=3, width=4, latent_dim=6, n_seeds=3, steps=1, calibration=4,
        device="cpu",
    ).fit(X)  # fmt: skip
    gan = det.gan_
    assert set(gan.generator_ema) == {0.99, 0.999}
    back = FittedGAN.load(gan.save(tmp_path / "gan.pt"))
    assert back.train_config == gan.train_config and back.seed == gan.seed
    assert set(back.generator_ema) == set(gan.generator_ema)
    for d, g in gan.generator_ema.items():
        for (k, v), w in zip(
            g.state_dict().items(), back.generator_ema[d].state_dict().values(), strict=True
        ):
            assert np.array_equal(v.numpy(), w.numpy()), k
    assert np.array_equal(back.z0.numpy(), gan.z0.numpy())
    # and through a detector file
    again = load_detector(det.save(tmp_path / "det.pt"))
    assert set(again.gan_.generator_ema) == {0.99, 0.999}
    np.testing.assert_array_equal(again.score_samples(X[:3]), det.score_samples(X[:3]))


def test_the_cpu_preset_gives_each_dataset_its_adgan_plus_setting():
    """MNIST and CIFAR-10 take their sections; a dataset without one (a folder, or a dataset
    this project does not ship) takes the preset's own adgan-plus setting and deviations."""
    cpu = load_preset("cpu")
    mnist, cifar, other = (
        cpu.for_dataset(d).params_for("adgan-plus") for d in ("mnist", "cifar10", "folder")
    )
    assert mnist["translation"] and other["translation"] and cifar["translation"]
    assert all(p["standardise_transformations"] for p in (mnist, cifar, other))
    assert cifar["reconstruction_weight"] == 0
    assert "reconstruction_weight" not in mnist and "reconstruction_weight" not in other
    base = cpu.for_dataset("folder").deviations
    assert any("translation = true" in d for d in base)
    assert any("standardise_transformations = true" in d for d in base)
    assert len(cpu.for_dataset("cifar10").deviations) == len(base) + 2
