"""What rejection does to a model as its threshold moves, through the discriminator as trained and
through its calibration: FID, precision, recall, class balance and the share of draws accepted, at
each threshold; and, to tell a discriminator that memorised its training set from one that does not,
the share of real training images and of held-out test images it accepts at the same thresholds.

    python examples/threshold.py RUN [-n 2000] [--thresholds 0.1,0.2,...] [--features mnist|inception] [-o DIR]

RUN is a run folder whose `gan calibrate` checkpoint sits beside its checkpoint (study.sh makes
both). Samples (seed 1) are scored against the first N MNIST test images, on the MNIST classifier's
features by default; a threshold that accepts too few draws (fewer than N in 100 N) is reported as
such. The real images are the first M = min(N, 5000) of MNIST train (which D trained on) and the
last M of MNIST test (which neither D nor `gan calibrate`'s fit saw). Writes DIR/threshold.json and DIR/threshold.png
(default DIR: the run folder). A usage example of the library: gancli.sample and gancli.score, and
the discriminator's scores of real images from gancli's modules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import gancli
from gancli.calibration import stored_calibration
from gancli.data import load_samples
from gancli.errors import GancliError
from gancli.inference import open_checkpoint
from gancli.sampling import score_images, threshold_accept

CURVES = {"as trained": "checkpoint.safetensors", "calibrated": "checkpoint-calibrated.safetensors"}
SAMPLE_METRICS = ("fid", "precision", "recall", "class_kl", "accepted")
TITLES = {"class_kl": "KL(class histogram || uniform)", "accepted": "share of draws accepted",
          "real accepted": "real images accepted"}


def point(checkpoint: Path, threshold: float | None, n: int, features: str) -> dict:
    """One sample at one threshold (None: no rejection), scored; or why it could not be drawn."""
    try:
        samples = gancli.sample(checkpoint, n=n, seed=1, reject=threshold, max_draws=100 * n)
    except GancliError as error:
        return {"threshold": threshold, "failed": str(error)}
    scores = gancli.score(samples, reference=f"mnist:test[:{n}]", features=features, n=n)
    # the class balance comes from the MNIST classifier, whatever the features
    classes = scores if features == "mnist" else gancli.score(samples, reference=f"mnist:test[:{n}]", features="mnist", n=n)
    return {"threshold": threshold, "accepted": len(samples) / samples.meta["drawn"],
            **{key: scores[key] for key in ("fid", "precision", "recall")},
            **{key: classes[key] for key in ("classes_present", "class_kl")}}


def real_images(n: int) -> dict[str, torch.Tensor]:
    """The first min(N, 5000) MNIST train images (seen in training) and as many of the last MNIST test
    images: the second half of MNIST test is what `gan calibrate` holds out."""
    m = min(n, 5000)
    return {"train": load_samples("mnist").images[:m], "held-out test": load_samples("mnist:test").images[-m:]}


def real_acceptance(checkpoint: Path, thresholds: list[float], real: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """The share of each set of real images D accepts at each threshold: a discriminator that
    memorised its training set accepts training images far more often than held-out ones."""
    opened = open_checkpoint(checkpoint, "cpu")
    config, D = opened.config, opened.D
    calibration = stored_calibration(opened.calibration, checkpoint, used=False, notify=print)
    try:
        accepts = [threshold_accept(config, t, calibration) for t in thresholds]
    except GancliError:  # a critic estimates no ratio before calibration: its points say so already
        return {}
    accepted = {}
    for name, images in real.items():
        v = score_images(config, D, images, 500, torch.device("cpu"))
        accepted[name] = [accept(v).double().mean().item() for accept in accepts]
    return accepted


def plot(sweep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (*SAMPLE_METRICS, "real accepted")
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    for ax, metric in zip(axes.flat, panels, strict=True):
        for color, curve in zip(("C0", "C1"), CURVES, strict=True):
            if metric == "real accepted":
                for style, (name, shares) in zip(("-", "--"), sweep["real accepted"][curve].items(), strict=False):
                    ax.plot(sweep["thresholds"], shares, style, color=color, marker="o", markersize=3, label=f"{curve}, {name}")
                continue
            drawn = [(p["threshold"], p[metric]) for p in sweep[curve] if metric in p]
            if drawn:
                ax.plot(*zip(*drawn, strict=True), color=color, marker="o", markersize=3, label=curve)
        if metric in sweep["no rejection"]:
            ax.axhline(sweep["no rejection"][metric], color="grey", linestyle=":", label="no rejection")
        ax.set_xlabel("threshold on P(real)")
        ax.set_title(TITLES.get(metric, metric))
        if metric in ("fid", "real accepted"):
            ax.legend(fontsize=7)
    fig.suptitle(f"{sweep['run']}: {sweep['n']} samples per point, {sweep['features']} features", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--thresholds", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--features", choices=("mnist", "inception"), default="mnist")
    parser.add_argument("-o", "--out", type=Path)
    args = parser.parse_args()
    out = args.out or args.run
    out.mkdir(parents=True, exist_ok=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    real = real_images(args.n)
    sweep = {"run": args.run.name, "n": args.n, "features": args.features, "thresholds": thresholds,
             "no rejection": point(args.run / CURVES["as trained"], None, args.n, args.features),
             **{curve: [point(args.run / name, t, args.n, args.features) for t in thresholds] for curve, name in CURVES.items()},
             "real accepted": {curve: real_acceptance(args.run / name, thresholds, real) for curve, name in CURVES.items()}}
    (out / "threshold.json").write_text(json.dumps(sweep, indent=1))
    plot(sweep, out / "threshold.png")
    print(f"wrote {out / 'threshold.json'} and {out / 'threshold.png'}")


if __name__ == "__main__":
    main()
