"""Quality gates and regression checks on `gan score --json` results: pure functions on dicts.

A gate bounds one metric of one result (`gan score --max-fid 50`); a comparison reads two results
of the same protocol and flags each metric that moved the wrong way by more than a tolerance,
relative to the baseline: FID and KID regress upwards, the others downwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from gancli.errors import GancliError

# metric -> +1 when higher is better, -1 when lower is better
DIRECTION = {"fid": -1, "kid_mean": -1, "precision": 1, "recall": 1, "density": 1, "coverage": 1, "classes_present": 1}
# what makes two results comparable: the same features, the same images counted the same way
PROTOCOL = ("extractor", "weights_hash", "n_generated", "n_reference", "reference", "k")


def failed_gates(result: dict, limits: dict[str, float]) -> list[str]:
    """Each limit the result misses, e.g. `fid 54.20 > 50`; `limits` maps a metric to its bound,
    a maximum for metrics where lower is better and a minimum for the others."""
    failed = []
    for metric, bound in limits.items():
        if metric not in result:
            raise GancliError(f"the result has no {metric} to gate", "--min-classes needs --features mnist")
        value, lower_is_better = result[metric], DIRECTION[metric] < 0
        if (value > bound) if lower_is_better else (value < bound):
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
    worse (an absolute change where the baseline is 0); regressed when worse_by > max_regression."""
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
            base, new = float(baseline[metric]), float(candidate[metric])
            worse_by = -direction * (new - base) / (abs(base) or 1.0) + 0.0  # + 0.0: no "-0.0%"
            changes.append(Change(metric, base, new, worse_by, worse_by > max_regression))
    return changes
