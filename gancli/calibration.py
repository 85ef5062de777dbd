"""Discriminator calibration before rejection: Platt scaling of D's log-ratio estimate.

A discriminator trained against a moving generator is no calibrated density-ratio estimator for
the final one. As MH-GAN's logistic option (Turner et al. 2019), `calibrate` fits
P(real | x) = sigmoid(a s(x) + b) on held-out real images against fresh fakes, where s is the
objective's log-ratio estimate log r (design note section 7), or a WGAN critic's raw output,
which gets a ratio estimate this way. The map is stored in a checkpoint's metadata
(`calibration`), and `log_ratio_fn` makes threshold rejection and DRS use a*s + b as log r.
The reference images must be held out: D never trained on them (`check_held_out`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gancli import losses
from gancli.config import MIN_CALIBRATION_IMAGES, TrainConfig
from gancli.data import parse_dataset_name, split_slice
from gancli.errors import GancliError
from gancli.runs import number

ECE_BINS = 15
# The score's log r is clamped to +-LOG_RATIO_BOUND. Pearson's (f')^-1(t) = 1 + t/2 is clipped at 0, so an output
# v <= -2 is log r = -inf, which would make the fit NaN. exp(-100) = 4e-44 is below float32's smallest normal
# number (1.2e-38), the precision D's outputs have: the clamp keeps the scores' order and changes no ratio D can tell.
LOG_RATIO_BOUND = 100.0


def raw_score_fn(config: TrainConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> the score the map is fitted on: log r, clamped to [-LOG_RATIO_BOUND, LOG_RATIO_BOUND], where the
    objective estimates it, else v (a critic)."""
    row = losses.objective_divergence(config)
    if row is None or row.log_ratio is None:
        return lambda v: v.double()
    return lambda v: losses.log_density_ratio(config, v).double().clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)


def _ece_text(value) -> str:
    """'ECE 0.012', or 'ECE unknown' where the calibration holds no finite number (hand-edited, or null)."""
    return f"ECE {value:.3f}" if number(value) is not None else "ECE unknown"


def stored_calibration(stored: dict | None, path: Path | str, used: bool, notify: Callable[[str], None],
                       generator: str | None = None) -> tuple[float, float] | None:
    """The map (a, b) of a checkpoint's calibration (`gan calibrate`; checkpoint.read_checkpoint checked
    that a and b are finite numbers), said to `notify` when rejection uses it, with a warning when it was
    fitted on samples of another generator than `generator`, the one sampling uses, named as the
    calibration's `generator` ("moving average" or "raw"; None where none draws, as in `gan filter`)."""
    if stored is None:
        return None
    found = float(stored["a"]), float(stored["b"])
    if not used:
        return found
    notify(f"rejection uses the calibration stored in {path} ({_ece_text(stored.get('ece_after'))} on held-out images)")
    fitted = stored.get("generator")
    if generator is not None and fitted is not None and fitted != generator:
        # the map is of D's scores on that generator's samples: on another one's, its confidences may be off
        notify(f"warning: that calibration was fitted on samples of the {fitted} generator, this sampling uses the "
               f"{generator} one (calibrate with the same --raw-generator choice as you sample)")
    return found


def _drawn_from(source: str) -> tuple[object, slice]:
    """What a source's images are: (dataset, split) for a dataset name (`mnist` is mnist:train), else the
    resolved path (relative to the working folder); and the slice of them it takes."""
    whole, part = split_slice(source)
    return parse_dataset_name(whole) or Path(whole).resolve(), part or slice(None)


def _slices_overlap(a: slice, b: slice) -> bool:
    """Whether two slices [A:B] of one sequence (A, B >= 0, None: its start or end) share an index."""
    end = lambda s: math.inf if s.stop is None else s.stop
    return max(a.start or 0, b.start or 0) < min(end(a), end(b))


def check_held_out(trained_on: str, reference: str) -> None:
    """Refuse a reference that shares images with the training data: the same dataset and split, or the
    same file or folder, in overlapping slices. A stream on stdin (`-`) cannot be told apart: it passes."""
    if "-" in (trained_on, reference):
        return
    (data, trained), (ref, held) = _drawn_from(trained_on), _drawn_from(reference)
    if data == ref and _slices_overlap(trained, held):
        raise GancliError(f"--ref {reference} overlaps the run's training data {trained_on}: calibration needs "
                          "images the discriminator never trained on",
                          "pass another split or folder, or a disjoint slice such as [A:B]")


def log_ratio_fn(config: TrainConfig, calibration: tuple[float, float] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> log r: the objective's own estimate, or with a calibration a s(v) + b (for critics too)."""
    if calibration is None:
        return lambda v: losses.log_density_ratio(config, v)
    a, b = calibration
    score = raw_score_fn(config)
    return lambda v: a * score(v) + b


def platt_targets(labels: np.ndarray) -> np.ndarray:
    """Platt's (1999) targets for labels (1 real, 0 fake): (N+ + 1)/(N+ + 2) for reals, 1/(N- + 2) for fakes.
    Strictly inside (0, 1), so that the cross-entropy against them has a finite minimiser even where the
    scores separate the sets (against 0 and 1 the slope would grow without bound)."""
    y = np.asarray(labels, np.float64)
    positives, negatives = y.sum(), len(y) - y.sum()
    return np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))


def fit_platt(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the mean cross-entropy of sigmoid(a s + b) against Platt's targets t (platt_targets),
    mean(log(1 + e^z) - t z) with z = a s + b, unpenalised: by Newton's method with step halving on the
    standardised score. The loss is convex with a finite minimiser: finite scores give a finite (a, b)."""
    s = np.asarray(scores, np.float64)
    t = platt_targets(labels)
    mean, std = s.mean(), s.std()
    scale = 1 / std if std > 0 else 0.0  # one score for all: nothing to tell them apart, a stays 0
    x = (s - mean) * scale

    def loss(w):
        z = w[0] * x + w[1]
        return float(np.mean(np.logaddexp(0, z) - t * z))

    w = np.zeros(2)
    for _ in range(100):
        p = np.exp(-np.logaddexp(0, -(w[0] * x + w[1])))  # sigmoid, without overflow in exp
        grad = np.array([np.mean((p - t) * x), np.mean(p - t)])
        h = p * (1 - p)
        hessian = np.array([[np.mean(h * x * x), np.mean(h * x)], [np.mean(h * x), np.mean(h)]])
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]  # singular where x is 0: the least-norm step keeps a at 0
        step_size = 1.0
        while loss(w - step_size * step) > loss(w) and step_size > 1e-6:
            step_size /= 2
        w = w - step_size * step
        if np.abs(step_size * step).max() < 1e-10:
            break
    return float(w[0] * scale), float(w[1] - w[0] * mean * scale)


def calibration_error(p: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE = sum over equal-width bins of |B|/N |mean(y_B) - mean(p_B)|, and Brier = mean (p - y)^2;
    both NaN where a confidence is NaN (it falls in no bin, and would else go uncounted)."""
    p, y = np.asarray(p, np.float64), np.asarray(labels, np.float64)
    if np.isnan(p).any():
        return {"ece": math.nan, "brier": math.nan}
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(abs(y[which == k].mean() - p[which == k].mean()) * (which == k).mean() for k in range(bins) if (which == k).any())
    return {"ece": float(ece), "brier": float(np.mean((p - y) ** 2))}


def _check_finite(scores: torch.Tensor, what: str) -> None:
    """Refuse scores with NaN or infinite entries, which no fit or error measure can use."""
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise GancliError(f"the discriminator's score is not finite on {bad} of {len(scores)} {what} images",
                          "the checkpoint may have diverged: calibrate an earlier one")


def calibrate(config: TrainConfig, real_v: torch.Tensor, fake_v: torch.Tensor) -> dict:
    """Fit the map on the first half of each set, report calibration error on the second half, before
    (D's own confidence; None for critics) and after. Returns the `calibration` metadata; scores that are
    not finite (a diverged D) are refused, so that every number in it is."""
    n = min(len(real_v), len(fake_v))
    if n < MIN_CALIBRATION_IMAGES:
        raise GancliError(f"calibration needs at least {MIN_CALIBRATION_IMAGES} real and {MIN_CALIBRATION_IMAGES} "
                          f"generated images, got {len(real_v)} and {len(fake_v)}")
    real_v, fake_v = real_v[:n], fake_v[:n]
    score = raw_score_fn(config)
    real_s, fake_s = score(real_v), score(fake_v)
    _check_finite(real_s, "real")
    _check_finite(fake_s, "generated")
    half = n // 2
    fit_s = torch.cat([real_s[:half], fake_s[:half]]).numpy()
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
