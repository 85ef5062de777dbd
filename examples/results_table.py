"""Write study.sh's results table from its scores/*.json, times/* and run logs.

    python examples/results_table.py OUT RESULTS --epochs E --dcgan-epochs D -n N --inception-n M --precision P ROW...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from pathlib import Path

# FID of the reference studies (same MLP generator, 100 epochs, 10,000 PNGs, course platform).
REFERENCE_FID = {
    "vanilla": "50.14", "fgan-js": "45.53", "fgan-kl": "44.36 (JS pre-trained)", "wgan": "94.79 / 87.54",
    "msgan": "34.84", "msgan-schedule": "39.06", "msgan+reject+mix": "27.72", "wgan-gp": "36.17",
    "wgan-gp+drs": "17.02 (course best)",
}
# a row's model is its name up to the first "+"; a run switched to KL (`gan resume --div kl`) counts
# its JS pre-training's time too
PRETRAINED = ("fgan-kl",)
SEEDED = ("vanilla", "best")


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_page(path: Path, lines: list[str]) -> None:
    """The page whole, atomically: a study's workers (study.sh MODEL..., frontier.sh ROW...) may finish
    rows at once, and each rewrites the page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, path)


def run_records(runs: Path, run: str) -> list[dict]:
    log = runs / run / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []


def last_record(runs: Path, run: str) -> dict:
    records = run_records(runs, run)
    return records[-1] if records else {}


def best_evaluated(runs: Path, run: str) -> str:
    """The lowest per-epoch FID of the run's log (2,000 vs 2,000 images) and its epoch; empty before the evaluation existed."""
    evaluated = [r for r in run_records(runs, run) if "fid" in r]
    return "" if not evaluated else "{fid:.1f} @{epoch}".format(**min(evaluated, key=lambda r: r["fid"]))


def pretrained_parents(model: str) -> dict[str, str]:
    return {model: f"{model}-js"} if model.startswith(PRETRAINED) else {}


def training_seconds(runs: Path, model: str, parents: dict[str, str]) -> float:
    return sum(r["seconds"] for run in (model, parents.get(model)) if run for r in run_records(runs, run))


def training_note(runs: Path, model: str, parents: dict[str, str]) -> str:
    """Training time, and where the divergence guard stopped the run (its last good checkpoint is sampled)."""
    text = minutes(training_seconds(runs, model, parents))
    stopped = runs / model / ".stopped"
    if stopped.is_file():
        found = re.search(r"diverged at epoch (\d+)", stopped.read_text())
        text += f", diverged in epoch {found.group(1)}: epoch {int(found.group(1)) - 1} sampled" if found else ", stopped early"
    return text


def minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min"


def number(scores: dict | None, key: str, digits: int = 2) -> str:
    value = None if scores is None else scores.get(key)
    return "" if value is None else f"{value:.{digits}f}"


def row_line(out: Path, results: Path, row: str) -> str:
    model = row.split("+")[0]
    runs = out / "runs"
    inception = read_json(out / "scores" / f"{row}.inception.json")
    mnist = read_json(out / "scores" / f"{row}.mnist.json")
    quality = inception or mnist  # precision, recall, density, coverage on the Inception features when present
    sample_time = out / "times" / f"{row}.sample"
    failed = out / "samples" / f"{row}.failed"
    grid = out / "grids" / f"{row}.png"
    if failed.is_file():  # the discriminator rejected (nearly) every draw: say so instead of scores
        reason = failed.read_text().strip().replace("|", "/")
        return f"| `{row}` | | {reason} |" + " |" * 11 + f" {REFERENCE_FID.get(row, '')} |"
    trained = (runs / model / "log.jsonl").is_file()
    cells = [
        f"`{row}`", f'<img src="{os.path.relpath(grid, results.parent)}" width="112">' if grid.is_file() else "",
        number(inception, "fid"), number(mnist, "fid"),
        *(number(quality, key) for key in ("precision", "recall", "density", "coverage")),
        number(inception, "kid_mean", 4),
        "" if mnist is None else f"{mnist['classes_present']}/10, KL {mnist['class_kl']:.3f}",
        best_evaluated(runs, model), str(last_record(runs, model).get("epoch", "")),
        training_note(runs, model, pretrained_parents(model)) if trained else "not run yet",
        minutes(float(sample_time.read_text()) if sample_time.is_file() else None),
        REFERENCE_FID.get(row, ""),
    ]
    return "| " + " | ".join(cells) + " |"


def spread(out: Path, rows: list[str], features: str) -> str:
    """Mean and sample standard deviation of FID, precision and recall over the rows scored so far."""
    scores = [s for s in (read_json(out / "scores" / f"{row}.{features}.json") for row in rows) if s]
    if len(scores) < 2:
        return f"{len(scores)} of {len(rows)} seeds scored"
    parts = [f"{key} {statistics.mean(s[key] for s in scores):.2f} ± {statistics.stdev(s[key] for s in scores):.2f}"
             for key in ("fid", "precision", "recall")]
    return ", ".join(parts) + f" ({len(scores)} seeds)"


def calibration_line(out: Path, model: str) -> str | None:
    found = read_json(out / "scores" / f"{model}.calibration.json")
    if found is None:
        return None
    # a WGAN critic's raw score is no probability: it has no error before calibration
    ece, brier = (" → ".join(number(found, f"{key}_{when}", 3) or "n/a" for when in ("before", "after"))
                  for key in ("ece", "brier"))
    return f"| `{model}` | {ece} | {brier} | {found['n'] - found['fitted_on']} |"


def sweep_cell(point: dict, key: str) -> str:
    if "failed" in point:
        return "none accepted" if "accepted in" in point["failed"] else "n/a"
    return f"{point[key]:.0%}" if key == "accepted" else number(point, key, 3 if key == "class_kl" else 2)


def sweep_lines(out: Path, results: Path, model: str) -> list[str]:
    """examples/threshold.py's sweep of MODEL as a figure and a table: each cell as trained / calibrated."""
    sweep = read_json(out / "threshold" / model / "threshold.json")
    if sweep is None:
        return []
    figure = os.path.relpath(out / "threshold" / model / "threshold.png", results.parent)
    keys = ("accepted", "fid", "precision", "recall", "class_kl")
    unrejected = sweep["no rejection"]
    lines = [f"### `{model}` ({sweep['n']} samples per point)", "", f'<img src="{figure}" width="720">', "",
             "| threshold | draws accepted | FID (MNIST) | precision | recall | class KL | train / held-out images accepted |",
             "|---|---|---|---|---|---|---|",
             "| none | " + " | ".join(sweep_cell(unrejected, key) for key in keys) + " | 100% / 100% |"]
    real = sweep["real accepted"]
    for i, threshold in enumerate(sweep["thresholds"]):
        cells = [" / ".join(sweep_cell(sweep[curve][i], key) for curve in ("as trained", "calibrated")) for key in keys]
        shares = " / ".join(" : ".join(f"{real[curve][name][i]:.0%}" for name in ("train", "held-out test"))
                            if real[curve] else "n/a" for curve in ("as trained", "calibrated"))
        lines.append(f"| {threshold:g} | " + " | ".join(cells) + f" | {shares} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--dcgan-epochs", type=int, required=True)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--inception-n", type=int, required=True)
    parser.add_argument("--precision", required=True)
    parser.add_argument("--inception-precision", required=True)
    parser.add_argument("rows", nargs="+")
    args = parser.parse_args()

    out = args.out
    floor_inception = read_json(out / "scores" / "real-floor.inception.json")
    floor_mnist = read_json(out / "scores" / "real-floor.mnist.json")
    floor = floor_inception or floor_mnist
    features = "Inception pool3" if args.inception_n else "the MNIST classifier (no Inception run)"
    models = list(dict.fromkeys(row.split("+")[0] for row in args.rows))
    calibrations = [line for line in map(lambda m: calibration_line(out, m), models) if line]
    sweeps = [line for model in models for line in sweep_lines(out, args.results, model)]
    training_hours = sum(training_seconds(out / "runs", m, pretrained_parents(m)) for m in models) / 3600
    seeds = [f"- `{base}`: " + "; ".join(f"{name} {spread(out, [base, f'{base}-seed1', f'{base}-seed2'], key)}"
                                         for name, key in (("Inception", "inception"), ("MNIST features", "mnist")))
             for base in SEEDED]
    lines = [
        "# Results: the reference study at its own budget",
        "",
        f"Written by `examples/study.sh --epochs {args.epochs} --dcgan-epochs {args.dcgan_epochs} -n {args.n} "
        f"--inception-n {args.inception_n} --precision {args.precision} --inception-precision "
        f"{args.inception_precision}` (restartable: a row without numbers is not trained or scored yet; the models "
        f"shown trained for {training_hours:.1f} hours of wall time in all). Every model: the course's "
        f"MLP (100-256-512-1024-784), {args.precision} training, batch 64, seed 0 unless the row says seedK, "
        f"{args.epochs} epochs (WGAN-GP {max(args.epochs * 3 // 2, 1)}, as the reference), the tool's defaults "
        f"otherwise, a moving average of G (`--ema 0.999`); `dcgan`: the DCGAN, {args.dcgan_epochs} epochs. "
        "`fgan-kl`: JS for 6 epochs, then `gan resume --div kl`. `fgan-kl-cosine`: the same with `--lr-decay cosine` "
        "over the KL epochs. `best`: gancli's recipe for the course MLP, `gan train fgan --div squared-hellinger` "
        "(the lowest FID of the divergences at 30 epochs, examples/divergences.md). "
        "MSGAN rows: `--ms-lambda 0.05 --d-dropout 0.3` (the reference's).",
        "",
        f"Each row samples {args.n} images (seed 1): `M` from the moving average, `+raw` from the raw generator, "
        "`+reject` keeps draws whose calibrated discriminator confidence is at least 0.6 (`gan calibrate`, Platt "
        "scaling on half of the MNIST test images against fresh samples), `+reject-uncalibrated` the same through "
        "the discriminator as trained, `+drs` discriminator rejection sampling (Azadi et al. 2019) on the calibrated "
        "ratio, `+mix` latents between two random ones.",
        "",
        f"FID (Inception) compares {args.inception_n} generated images with the first {args.inception_n} MNIST test "
        f"images (TF-2015 FID Inception, `--precision {args.inception_precision}`: the JSON's extractor says "
        f"bf16 where it ran under bf16 autocast); FID (MNIST) compares {args.n} with {args.n} on the shipped "
        f"classifier's features. Precision, recall, density and coverage (k=3) and KID are on {features}. `best "
        "epoch` is the lowest FID of the per-epoch evaluation (2,000 vs 2,000 on the MNIST classifier's features) and "
        "its epoch. FIDs from other protocols are not comparable: the reference numbers came from 10,000 PNGs on the "
        "course platform's own protocol.",
        "",
        "| row | samples | FID (Inception) | FID (MNIST) | precision | recall | density | coverage | KID "
        "| classes | best epoch | epochs | training | sampling | reference FID |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(row_line(out, args.results, row) for row in args.rows),
        f"| real-data floor: MNIST train vs test | | {number(floor_inception, 'fid')} | {number(floor_mnist, 'fid')} | "
        + " | ".join(number(floor, key) for key in ("precision", "recall", "density", "coverage"))
        + f" | {number(floor_inception, 'kid_mean', 4)} | | | | | | |",
        "",
        "## Over seeds",
        "",
        *seeds,
        "",
        "## Calibration before rejection",
        "",
        "Expected calibration error and Brier score of P(real | x) on held-out images, before and after `gan calibrate`.",
        "",
        "| model | ECE | Brier | held-out pairs |",
        "|---|---|---|---|",
        *calibrations,
        "",
        *(["## Rejection as its threshold moves", "",
           "`examples/threshold.py` on the model's checkpoint: at each threshold on P(real), N samples (seed 1) "
           "scored on the MNIST classifier's features against the first N MNIST test images; each cell gives "
           "the discriminator as trained / calibrated (`none accepted`: fewer than N in 100 N draws; `n/a`: a "
           "critic has no threshold before calibration). Class KL is KL(class histogram || uniform): a selection "
           "that collapses diversity raises it. The last column is the share of min(N, 5000) training images : as "
           "many held-out test images the discriminator accepts; one that memorised its training set accepts "
           "the first far more often.", "", *sweeps] if sweeps else []),
    ]
    write_page(args.results, lines)


if __name__ == "__main__":
    main()
