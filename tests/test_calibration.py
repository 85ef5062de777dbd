"""Discriminator calibration (gan calibrate): the Platt fit, the error measures, and rejection that uses the map."""

import json
import math

import numpy as np
import torch

from gancli import checkpoint as ckpt
from gancli.calibration import calibration_error, fit_platt
from gancli.sampling import threshold_accept
from tests.conftest import tiny_config


def test_platt_fit_recovers_a_logistic_model():
    rng = np.random.default_rng(0)
    s = rng.normal(0, 2, 40_000)
    y = (rng.random(len(s)) < 1 / (1 + np.exp(-(1.5 * s - 0.5)))).astype(float)
    a, b = fit_platt(s * 3 + 7, y)  # any affine scale of the score: the fit undoes it
    assert abs(a * 3 - 1.5) < 0.05 and abs(a * 7 + b - -0.5) < 0.05


def test_platt_fit_stays_finite_when_the_sets_separate():
    a, b = fit_platt(np.r_[np.full(50, 5.0), np.full(50, -5.0)], np.r_[np.ones(50), np.zeros(50)])
    assert math.isfinite(a) and math.isfinite(b) and a > 0


def test_calibration_error_measures():
    y = np.r_[np.ones(50), np.zeros(50)]
    assert calibration_error(y, y) == {"ece": 0.0, "brier": 0.0}
    assert calibration_error(np.full(100, 0.5), y) == {"ece": 0.0, "brier": 0.25}
    assert math.isclose(calibration_error(np.full(100, 0.9), y)["ece"], 0.4)  # says 90% real, half are


def test_threshold_rejection_uses_the_calibrated_ratio_and_then_works_for_critics():
    config = tiny_config("fgan", div="kl")
    v = torch.linspace(-3, 3, 61)
    log_r = v - 1  # KL: g_f(v) = v, log r = v - 1
    assert torch.equal(threshold_accept(config, 0.6, (2.0, -1.0))(v), torch.sigmoid(2 * log_r - 1) >= 0.6)
    critic = tiny_config("wgan")
    assert torch.equal(threshold_accept(critic, 0.5, (1.0, 0.5))(v), torch.sigmoid(v + 0.5) >= 0.5)


def test_calibrate_writes_a_new_checkpoint_that_rejection_uses(cli, checkpoints, tiny_data, tmp_path):
    original = checkpoints / "checkpoint.safetensors"
    before = original.read_bytes()
    result = cli("calibrate", original, "--ref", tiny_data, "-n", "128", "-o", tmp_path / "cal.safetensors", "--json",
                 "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert original.read_bytes() == before
    stored = ckpt.read_file(tmp_path / "cal.safetensors", "gan")[1]["calibration"]
    assert stored == json.loads(result.stdout)
    assert stored["n"] == 128 and stored["fitted_on"] == 64 and all(
        math.isfinite(stored[k]) for k in ("a", "b", "ece_before", "ece_after", "brier_before", "brier_after"))
    result = cli("sample", tmp_path / "cal.safetensors", "-n", "8", "--reject", "0.5", "--max-draws", "100000",
                 "-o", tmp_path / "s.safetensors", "--device", "cpu")
    assert "uses the calibration stored in" in " ".join(result.stderr.split())
    # a WGAN critic estimates no ratio: refused before calibration, usable after
    critic = checkpoints / "wgan.safetensors"
    result = cli("sample", critic, "-n", "8", "--reject", "0.5", "-o", tmp_path / "w.safetensors")
    assert result.exit_code == 1 and "gan calibrate" in result.stderr
    assert cli("calibrate", critic, "--ref", tiny_data, "-n", "64", "-o", tmp_path / "wcal.safetensors").exit_code == 0
    result = cli("sample", tmp_path / "wcal.safetensors", "-n", "8", "--reject", "0.5", "--max-draws", "100000",
                 "-o", tmp_path / "w.safetensors", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    result = cli("calibrate", original, "--ref", tiny_data, "-o", original)
    assert result.exit_code == 1 and "the checkpoint itself" in result.stderr
