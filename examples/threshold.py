"""What rejection does to a model as its threshold moves, through the discriminator as trained and
through its calibration: FID, precision, recall and the share of draws accepted, at each threshold.

    python examples/threshold.py RUN [-n 2000] [--thresholds 0.1,0.2,...] [-o DIR]

RUN is a run folder whose `gan calibrate` checkpoint sits beside its checkpoint (study.sh makes
both). Samples (seed 1) are scored on the MNIST classifier's features against the first N MNIST
test images; a threshold that accepts too few draws (fewer than N in 100 N) is reported as such.
Writes DIR/threshold.json and DIR/threshold.png (default DIR: the run folder). A usage example of
the library: gancli.sample and gancli.score, no subprocess.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gancli
from gancli.errors import GancliError

CURVES = {"as trained": "checkpoint.safetensors", "calibrated": "checkpoint-calibrated.safetensors"}
METRICS = ("fid", "precision", "recall", "accepted")


def point(checkpoint: Path, threshold: float | None, n: int) -> dict:
    """One sample at one threshold (None: no rejection), scored; or why it could not be drawn."""
    try:
        samples = gancli.sample(checkpoint, n=n, seed=1, reject=threshold, max_draws=100 * n)
    except GancliError as error:
        return {"threshold": threshold, "failed": str(error)}
    scores = gancli.score(samples, reference=f"mnist:test[:{n}]", features="mnist", n=n)
    return {"threshold": threshold, "accepted": len(samples) / samples.meta["drawn"],
            **{key: scores[key] for key in ("fid", "precision", "recall", "classes_present")}}


def plot(curves: dict[str, list[dict]], unrejected: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    for ax, metric in zip(axes, METRICS, strict=True):
        for label, points in curves.items():
            drawn = [(p["threshold"], p[metric]) for p in points if metric in p]
            if drawn:
                ax.plot(*zip(*drawn, strict=True), marker="o", markersize=3, label=label)
        if metric in unrejected:
            ax.axhline(unrejected[metric], color="grey", linestyle=":", label="no rejection")
        ax.set_xlabel("threshold on P(real)")
        ax.set_title("share of draws accepted" if metric == "accepted" else metric)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--thresholds", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("-o", "--out", type=Path)
    args = parser.parse_args()
    out = args.out or args.run
    out.mkdir(parents=True, exist_ok=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    unrejected = point(args.run / CURVES["as trained"], None, args.n)
    curves = {label: [point(args.run / name, t, args.n) for t in thresholds] for label, name in CURVES.items()}
    (out / "threshold.json").write_text(json.dumps({"n": args.n, "no rejection": unrejected, **curves}, indent=1))
    plot(curves, unrejected, out / "threshold.png")
    print(f"wrote {out / 'threshold.json'} and {out / 'threshold.png'}")


if __name__ == "__main__":
    main()
