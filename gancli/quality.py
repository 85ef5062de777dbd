"""Quality gates and regression checks on `gan score --json` results: pure functions on dicts.

A gate bounds one metric of one result (`gan score --max-fid 50`); a comparison reads two results
of the same protocol and flags each metric that moved the wrong way by more than a tolerance,
relative to the baseline: FID and KID regress upwards, the others downwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gancli.errors import GancliError

# metric -> +1 when higher is better, -1 when lower is better
DIRECTION = {"fid": -1, "kid_mean": -1, "precision": 1, "recall": 1, "density": 1, "coverage": 1, "classes_present": 1,
             "class_accuracy": 1, "intra_fid_mean": -1}
# what makes two results comparable: the same features, the same images counted the same way
PROTOCOL = ("extractor", "weights_hash", "n_generated", "n_reference", "reference", "k")


def metric_value(result: dict, metric: str, origin: str) -> float:
    """result[metric] as a float: a finite number; a string, null, list, boolean, NaN or infinity is an error."""
    value = result[metric]
    # bool is an int to Python, and float() would take "12" or True: only JSON numbers are metric values
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GancliError(f"{origin}: {metric} is {type(value).__name__} {str(value)[:40]!r}, not a number",
                          "write it with `gan score --json`")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise GancliError(f"{origin}: {metric} is {number}, not a finite number", "score the images again")
    return number


def check_result(result: object, origin: str) -> dict:
    """`result` if it is a `gan score --json` object whose metrics are all finite numbers; else an error naming `origin`."""
    if not isinstance(result, dict) or "fid" not in result or "extractor" not in result:
        raise GancliError(f"{origin} is not a `gan score --json` result", "it needs fid and the protocol fields")
    for metric in DIRECTION:
        if metric in result:
            metric_value(result, metric, origin)
    return result


def failed_gates(result: dict, limits: dict[str, float]) -> list[str]:
    """Each limit the result misses, e.g. `fid 54.20 > 50`; `limits` maps a metric to its bound,
    a maximum for metrics where lower is better and a minimum for the others."""
    failed = []
    for metric, bound in limits.items():
        if metric not in result:
            raise GancliError(f"the result has no {metric} to gate",
                              "--min-classes needs a classifier's predictions: --features mnist, fashion-mnist or auto")
        value, lower_is_better = result[metric], DIRECTION[metric] < 0
        if not (value <= bound if lower_is_better else value >= bound):  # so that NaN misses every gate
            failed.append(f"{metric} {value:.4g} {'>' if lower_is_better else '<'} {bound:g}")
    return failed


def protocol_differences(baseline: dict, candidate: dict) -> list[str]:
    """The protocol fields in which two results differ, e.g. `n_generated 2000 vs 10000`."""
    return [f"{key} {baseline.get(key)} vs {candidate.get(key)}" for key in PROTOCOL
            if baseline.get(key) != candidate.get(key)]


@dataclass(frozen=True)
class Change:
    metric: str
    baseline: float
    candidate: float
    worse_by: float  # relative to the baseline, in the metric's bad direction; negative: better
    regressed: bool


def compare(baseline: dict, candidate: dict, max_regression: float, metrics: tuple[str, ...] = tuple(DIRECTION)) -> list[Change]:
    """Each of `metrics` both results hold: worse_by = (candidate - baseline) / |baseline| towards
    worse (an absolute change where the baseline is 0); regressed when worse_by > max_regression.
    A value that is not a finite number, or no metric to compare, is an error."""
    unknown = [m for m in metrics if m not in DIRECTION]
    if unknown:
        raise GancliError(f"unknown metric {unknown[0]!r}", f"choose among {', '.join(DIRECTION)}")
    different = protocol_differences(baseline, candidate)
    if different:
        raise GancliError(f"the results have different protocols: {', '.join(different)}",
                          "score both with the same extractor, weights, counts, reference and k")
    changes = []
    for metric in metrics:
        direction = DIRECTION[metric]
        if metric in baseline and metric in candidate:
            base, new = metric_value(baseline, metric, "the baseline"), metric_value(candidate, metric, "the candidate")
            worse_by = -direction * (new - base) / (abs(base) or 1.0) + 0.0  # + 0.0: no "-0.0%"
            changes.append(Change(metric, base, new, worse_by, worse_by > max_regression))
    if not changes:  # nothing compared is no pass
        raise GancliError(f"no metric to compare: the results do not both hold {' or '.join(metrics)}",
                          "classes_present comes with a classifier (--features mnist, fashion-mnist or auto); "
                          "choose --metrics among the results' fields")
    return changes
