"""Discriminator calibration before rejection: Platt scaling of D's log-ratio estimate.

A discriminator trained against a moving generator is no calibrated density-ratio estimator for
the final one. As MH-GAN's logistic option (Turner et al. 2019), `calibrate` fits
P(real | x) = sigmoid(a s(x) + b) on held-out real images against fresh fakes, where s is the
objective's log-ratio estimate log r (design note section 7), or a WGAN critic's raw output,
which gets a ratio estimate this way. The map is stored in a checkpoint's metadata
(`calibration`), and `log_ratio_fn` makes threshold rejection and DRS use a*s + b as log r.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gancli import losses
from gancli.config import TrainConfig
from gancli.errors import GancliError

ECE_BINS = 15
RIDGE = 1e-3  # on the slope of the standardised score: keeps the fit finite when D separates the sets


def raw_score_fn(config: TrainConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> the score the map is fitted on: log r where the objective estimates it, else v (a critic)."""
    row = losses.objective_divergence(config)
    if row is None or row.log_ratio is None:
        return lambda v: v.double()
    return lambda v: losses.log_density_ratio(config, v).double()


def calibration_map(meta: dict) -> tuple[float, float] | None:
    """The (a, b) a checkpoint's metadata holds, None when it holds none; a malformed one is an error."""
    found = meta.get("calibration")
    if found is None:
        return None
    try:
        a, b = float(found["a"]), float(found["b"])
    except (TypeError, KeyError, ValueError):
        raise GancliError("the checkpoint's calibration is malformed", "calibrate it again with `gan calibrate`") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise GancliError("the checkpoint's calibration is not finite", "calibrate it again with `gan calibrate`")
    return a, b


def stored_calibration(meta: dict, path: Path, used: bool, notify: Callable[[str], None]) -> tuple[float, float] | None:
    """The checkpoint's calibration (`gan calibrate`), said to `notify` when rejection uses it."""
    found = calibration_map(meta)
    if found is not None and used:
        ece = meta["calibration"].get("ece_after", float("nan"))
        notify(f"rejection uses the calibration stored in {path} (ECE {ece:.3f} on held-out images)")
    return found


def log_ratio_fn(config: TrainConfig, calibration: tuple[float, float] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> log r: the objective's own estimate, or with a calibration a s(v) + b (for critics too)."""
    if calibration is None:
        return lambda v: losses.log_density_ratio(config, v)
    a, b = calibration
    score = raw_score_fn(config)
    return lambda v: a * score(v) + b


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the mean cross-entropy of sigmoid(a s + b) against labels (1 real, 0 fake), by Newton's
    method on the standardised score with a small ridge on the slope and step halving."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.float64)
    mean, std = s.mean(), max(s.std(), 1e-12)
    x = (s - mean) / std

    def loss(w):
        z = w[0] * x + w[1]
        return float(np.mean(np.logaddexp(0, z) - y * z) + RIDGE * w[0] ** 2 / 2)

    w = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(w[0] * x + w[1])))
        grad = np.array([np.mean((p - y) * x) + RIDGE * w[0], np.mean(p - y)])
        h = p * (1 - p)
        hessian = np.array([[np.mean(h * x * x) + RIDGE, np.mean(h * x)], [np.mean(h * x), np.mean(h) + 1e-12]])
        step = np.linalg.solve(hessian, grad)
        t = 1.0
        while loss(w - t * step) > loss(w) and t > 1e-6:
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() < 1e-10:
            break
    return float(w[0] / std), float(w[1] - w[0] * mean / std)


def calibration_error(p: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE = sum over equal-width bins of |B|/N |mean(y_B) - mean(p_B)|, and Brier = mean (p - y)^2."""
    p, y = np.asarray(p, np.float64), np.asarray(labels, np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(abs(y[which == k].mean() - p[which == k].mean()) * (which == k).mean() for k in range(bins) if (which == k).any())
    return {"ece": float(ece), "brier": float(np.mean((p - y) ** 2))}


def calibrate(config: TrainConfig, real_v: torch.Tensor, fake_v: torch.Tensor) -> dict:
    """Fit the map on the first half of each set, report calibration error on the second half, before
    (D's own confidence; None for critics) and after. Returns the `calibration` metadata."""
    n = min(len(real_v), len(fake_v))
    if n < 4:
        raise GancliError(f"calibration needs at least 4 real and 4 generated images, got {len(real_v)} and {len(fake_v)}")
    real_v, fake_v = real_v[:n], fake_v[:n]
    score = raw_score_fn(config)
    half = n // 2
    fit_s = torch.cat([score(real_v[:half]), score(fake_v[:half])]).numpy()
    fit_y = np.r_[np.ones(half), np.zeros(half)]
    a, b = fit_platt(fit_s, fit_y)
    held_v = torch.cat([real_v[half:], fake_v[half:]])
    held_y = np.r_[np.ones(n - half), np.zeros(n - half)]
    after = calibration_error(torch.sigmoid(log_ratio_fn(config, (a, b))(held_v)).numpy(), held_y)
    try:
        before = calibration_error(torch.sigmoid(log_ratio_fn(config)(held_v).double()).numpy(), held_y)
    except GancliError:  # a critic: no confidence of its own to compare
        before = {"ece": None, "brier": None}
    return {"method": "platt", "a": a, "b": b, "n": n, "fitted_on": half,
            "ece_before": before["ece"], "ece_after": after["ece"], "brier_before": before["brier"], "brier_after": after["brier"]}
