"""Regressions of calibration, sampling and the writers of images: each test failed before its fix."""

import contextlib
import json
import math
import signal
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.optimize import minimize

from gancli.errors import GancliError
from gancli.state import new_state, save_state
from tests.conftest import gan_env, synthetic_images, tiny_config


@contextlib.contextmanager
def within(seconds: int):
    """Fail with TimeoutError instead of hanging: the defects here were loops without a bound."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def mean_log_loss(w, s, targets) -> float:
    z = w[0] * s + w[1]
    return float(np.mean(np.logaddexp(0, z) - targets * z))


def scipy_fit(s, targets) -> np.ndarray:
    return minimize(mean_log_loss, np.zeros(2), args=(s, targets), method="BFGS", options={"gtol": 1e-10}).x


# A. The Platt fit: unpenalised, with Platt's targets

@pytest.mark.parametrize("slope", [8.0, 2.0])
def test_platt_fit_is_the_unpenalised_optimum(slope):
    from gancli.calibration import fit_platt, platt_targets

    rng = np.random.default_rng(1)
    s = rng.normal(0, 1, 4000)
    y = (rng.random(len(s)) < 1 / (1 + np.exp(-(slope * s - 1)))).astype(float)
    a, b = fit_platt(s, y)
    # the exact minimiser of the cross-entropy against Platt's targets ...
    np.testing.assert_allclose((a, b), scipy_fit(s, platt_targets(y)), rtol=1e-5)
    # ... within O(1/n) of the unpenalised optimum on the labels (the ridge fitted 6.17 for slope 8)
    optimum = scipy_fit(s, y)
    assert abs(a - optimum[0]) < 0.03 * optimum[0]
    assert mean_log_loss((a, b), s, y) < mean_log_loss(optimum, s, y) + 1e-3


def test_platt_fit_on_separable_data_is_finite_and_optimal():
    from gancli.calibration import fit_platt, platt_targets

    s = np.r_[np.linspace(1, 5, 60), np.linspace(-5, -1, 40)]
    y = np.r_[np.ones(60), np.zeros(40)]
    assert platt_targets(y)[0] == 61 / 62 and platt_targets(y)[-1] == 1 / 42
    a, b = fit_platt(s, y)
    assert math.isfinite(a) and math.isfinite(b) and a > 0
    np.testing.assert_allclose((a, b), scipy_fit(s, platt_targets(y)), rtol=1e-4)
    assert fit_platt(np.full(10, 3.0), np.r_[np.ones(5), np.zeros(5)]) == pytest.approx((0.0, 0.0))  # one score: no slope


# B. The log-ratio domain: Pearson's log r = -inf, NaN scores, NaN confidences

def test_a_pearson_discriminator_at_minus_infinity_calibrates_to_finite_numbers():
    from gancli.calibration import calibrate

    config = tiny_config("fgan", div="pearson")
    real_v = torch.linspace(-1.5, 3, 64)
    fake_v = torch.cat([torch.linspace(-5, -2, 32), torch.linspace(-1.9, 1, 32)])  # log r = -inf on the first half
    fake_v = fake_v[torch.randperm(64, generator=torch.Generator().manual_seed(0))]
    result = calibrate(config, real_v, fake_v)
    json.dumps(result, allow_nan=False)
    assert result["a"] > 0 and 0 <= result["ece_after"] < 0.5


def test_calibrating_nan_scores_is_refused():
    from gancli.calibration import calibrate

    fake_v = torch.linspace(-1, 1, 32)
    fake_v[3] = math.nan
    with pytest.raises(GancliError, match="not finite on 1 of 32 generated images"):
        calibrate(tiny_config(), torch.linspace(0, 2, 32), fake_v)


def test_calibration_error_does_not_drop_a_nan_confidence():
    from gancli.calibration import calibration_error

    measured = calibration_error(np.array([math.nan, 0.5, 0.5, 0.5]), np.array([1, 1, 0, 0]))
    assert math.isnan(measured["ece"]) and math.isnan(measured["brier"])


@pytest.fixture(scope="module")
def pearson_checkpoint(tmp_path_factory):
    """An untrained Pearson f-GAN whose D outputs v <= -2 (log r = -inf) on about half of the fakes."""
    path = tmp_path_factory.mktemp("pearson") / "pearson.safetensors"
    state = new_state(tiny_config("fgan", div="pearson"))
    with torch.no_grad():
        v = state.D(state.G(torch.randn(512, state.config.z_dim)))
        state.D.net[-1].bias += -2 - v.median()
    save_state(path, state)
    return path


def test_calibrate_on_a_pearson_discriminator_writes_a_finite_map(cli, pearson_checkpoint, tiny_data, tmp_path):
    result = cli("calibrate", pearson_checkpoint, "--ref", tiny_data, "-n", "128", "--json", "-o", tmp_path / "cal.safetensors",
                 "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    stored = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert all(math.isfinite(stored[k]) for k in ("a", "b", "ece_before", "ece_after", "brier_before", "brier_after"))


# C. The stored calibration: its ECE, its generator, its reference

def stored(**fields) -> dict:
    return {"a": 1.0, "b": 0.0, **fields}


@pytest.mark.parametrize("ece", [{"ece_after": None}, {}, {"ece_after": "0.1"}, {"ece_after": True}])
def test_a_calibration_without_a_finite_ece_is_said_as_unknown(ece):
    from gancli.calibration import stored_calibration

    notes = []
    assert stored_calibration(stored(**ece), "c.safetensors", True, notes.append) == (1.0, 0.0)
    assert notes == ["rejection uses the calibration stored in c.safetensors (ECE unknown on held-out images)"]


def test_a_calibration_of_the_moving_average_warns_when_the_raw_generator_samples():
    from gancli.calibration import stored_calibration

    notes = []
    meta = stored(ece_after=0.01, generator="moving average")
    stored_calibration(meta, "c.safetensors", True, notes.append, generator="raw")
    assert notes[0].endswith("(ECE 0.010 on held-out images)") and len(notes) == 2
    assert notes[1].startswith("warning: that calibration was fitted on samples of the moving average generator, "
                               "this sampling uses the raw one")
    for generator in ("moving average", None):  # the same generator, or none (gan filter scores given images)
        notes.clear()
        stored_calibration(meta, "c.safetensors", True, notes.append, generator=generator)
        assert len(notes) == 1
    notes.clear()
    stored_calibration(meta, "c.safetensors", False, notes.append, generator="raw")  # not used: nothing to say
    assert notes == []


@pytest.mark.parametrize("trained, reference", [
    ("mnist[:512]", "mnist[:512]"), ("mnist:test", "mnist:test"), ("mnist", "mnist:train[100:200]"),
    ("mnist[100:600]", "mnist[500:]"), ("mnist:test[:2000]", "mnist:test"), ("pngs", "./pngs/"), ("pngs[:10]", "pngs[5:20]"),
])
def test_a_reference_the_run_trained_on_is_refused(tmp_path, monkeypatch, trained, reference):
    from gancli.calibration import check_held_out

    monkeypatch.chdir(tmp_path)
    with pytest.raises(GancliError, match="overlaps the run's training data") as refused:
        check_held_out(trained, reference)
    assert refused.value.hint


@pytest.mark.parametrize("trained, reference", [
    ("mnist", "mnist:test"), ("mnist[:512]", "mnist[512:1024]"), ("mnist:test[:5000]", "mnist:test[5000:]"),
    ("fashion-mnist", "mnist:train"), ("pngs", "other"), ("mnist", "pngs"), ("pngs[:10]", "pngs[10:]"), ("-", "-"),
])
def test_a_held_out_reference_passes(tmp_path, monkeypatch, trained, reference):
    from gancli.calibration import check_held_out

    monkeypatch.chdir(tmp_path)
    check_held_out(trained, reference)


# D. Library calls without the CLI's checks

@pytest.mark.parametrize("percentile", [150.0, -1.0, math.nan])
def test_a_drs_percentile_outside_0_100_is_refused(percentile):
    from gancli.sampling import make_acceptance

    state = new_state(tiny_config())
    with pytest.raises(GancliError, match="--drs-percentile"):
        make_acceptance(state.config, state.G, state.D, None, method="drs", drs_percentile=percentile)


@pytest.mark.parametrize("psi", [0.0, -1.0, math.inf, math.nan])
def test_a_truncation_bound_that_is_not_positive_and_finite_is_refused(psi):
    from gancli.sampling import latents

    with within(10), pytest.raises(GancliError, match="--truncation"):
        next(latents(0, 8, truncation=psi))


def test_truncation_is_exact_and_bounded_for_any_psi():
    from gancli.sampling import latents

    for psi in (1e-5, 0.5, 2.0):
        with within(10):
            z = next(latents(0, 64, truncation=psi))
        assert (z.abs() <= psi).all()
        x = z.double().flatten().numpy()
        assert scipy.stats.kstest(x, scipy.stats.truncnorm(-psi, psi).cdf).pvalue > 1e-3
        mean_abs = 2 * (scipy.stats.norm.pdf(0) - scipy.stats.norm.pdf(psi)) / (2 * scipy.stats.norm.cdf(psi) - 1)
        assert abs(np.abs(x).mean() - mean_abs) < 0.02 * mean_abs


def test_sample_with_a_tiny_truncation_ends_with_the_same_images_whatever_the_batch_size(cli, checkpoints, tmp_path):
    from gancli.data import load_images

    with within(60):
        for batch in ("7", "64"):
            result = cli("sample", checkpoints, "-n", "40", "--truncation", "0.00001", "--batch-size", batch,
                         "-o", tmp_path / f"t{batch}.safetensors", "--device", "cpu")
            assert result.exit_code == 0, result.stderr
    assert torch.equal(load_images(str(tmp_path / "t7.safetensors")), load_images(str(tmp_path / "t64.safetensors")))


# E. Destinations and the writers of pictures

def test_sample_into_a_folder_that_holds_files_is_refused_and_an_empty_dotted_one_is_a_folder(cli, checkpoints, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/000000.png").write_bytes(b"an earlier model's image")
    result = cli("sample", checkpoints, "-n", "4", "-o", "out", "--device", "cpu")
    assert result.exit_code == 1 and "out already holds files" in result.stderr and "empty or new folder" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["000000.png"]
    (tmp_path / "v1.5").mkdir()
    assert cli("sample", checkpoints, "-n", "4", "-o", "v1.5", "--device", "cpu").exit_code == 0
    assert len(list((tmp_path / "v1.5").glob("*.png"))) == 4
    assert cli("sample", checkpoints, "-n", "4", "-o", "new.v2/", "--device", "cpu").exit_code == 0  # a separator says folder
    assert len(list((tmp_path / "new.v2").glob("*.png"))) == 4


@pytest.mark.parametrize("output", ["g.png", "a.gif"])
def test_interpolate_onto_a_folder_is_refused_before_any_work(cli, checkpoints, tmp_path, output):
    (tmp_path / output).mkdir()
    result = cli("interpolate", checkpoints, "--pairs", "2", "--steps", "3", "-o", output, "--device", "cpu")
    assert result.exit_code == 1 and result.stderr == f"gan interpolate: error: -o {output} is a folder (name a file in it)\n"


FILE_SIZE_LIMIT = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                   "resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200)); sys.argv[0] = 'gan'; "
                   "from gancli.cli import main; main()")


@pytest.mark.parametrize("command, picture", [
    (["sample", "-n", "64", "--grid", "g.png", "-o", "-"], "g.png"),
    (["interpolate", "--pairs", "4", "--steps", "6", "-o", "a.gif"], "a.gif"),
])
def test_a_full_disk_while_writing_a_picture_is_one_line_and_leaves_no_partial_file(checkpoints, tmp_path, command, picture):
    """Files beyond 200 bytes fail to grow (EFBIG, as ENOSPC would): the picture is written whole or not at all."""
    result = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, command[0], str(checkpoints), *command[1:], "--device", "cpu"],
                            cwd=tmp_path, env=gan_env(tmp_path), capture_output=True, timeout=300)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1, err
    assert err.startswith(f"gan {command[0]}: error: cannot write {picture}: File too large; nothing was written"), err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == []


def test_plot_grids_leaves_out_an_unreadable_grid_and_says_so(tmp_path):
    from gancli.plots import grids_animation
    from gancli.streams import save_png_grid

    grids = tmp_path / "run/grids"
    grids.mkdir(parents=True)
    for epoch in (1, 3):
        save_png_grid(synthetic_images(64, seed=epoch), grids / f"epoch-00{epoch}.png")
    whole = (grids / "epoch-001.png").read_bytes()
    (grids / "epoch-002.png").write_bytes(whole[: len(whole) // 2])  # truncated mid-way, as a kill would leave it
    (grids / "epoch-004.png").write_bytes(b"")
    notes = []
    assert grids_animation(tmp_path / "run", tmp_path / "e.gif", warn=notes.append) == 2
    assert notes == [f"{grids / 'epoch-002.png'} is no readable PNG: left out", f"{grids / 'epoch-004.png'} is no readable PNG: left out"]
    from PIL import Image

    assert Image.open(tmp_path / "e.gif").n_frames == 2
    for path in (grids / "epoch-001.png", grids / "epoch-003.png"):
        path.write_bytes(b"")
    with pytest.raises(GancliError, match="none of the 4 grids"):
        grids_animation(tmp_path / "run", tmp_path / "e.gif")
