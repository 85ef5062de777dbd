"""Write study.sh's results table from its scores/*.json, times/*.sample and run logs.

    python examples/results_table.py OUT RESULTS --epochs E -n N --inception-n M --precision P ROW...
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

# FID of the reference studies (same MLP generator, 100 epochs, 10,000 PNGs, course platform).
REFERENCE_FID = {
    "vanilla": "50.14", "fgan-js": "45.53", "fgan-kl": "44.36 (JS pre-trained)", "wgan": "94.79 / 87.54",
    "msgan": "34.84", "msgan-schedule": "39.06", "msgan+reject+mix": "27.72", "wgan-gp": "36.17",
    "wgan-gp+top": "17.02 (DRS)",
}
# a switched run's training time includes its parent's
PARENT_RUN = {"fgan-kl": "fgan-js-pretrain"}


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def training_seconds(runs: Path, model: str, parents: dict[str, str] = PARENT_RUN) -> float:
    total = 0.0
    for run in (model, parents.get(model)):
        log = runs / run / "log.jsonl" if run else None
        if log and log.is_file():
            total += sum(json.loads(line)["seconds"] for line in log.read_text().splitlines() if line.strip())
    return total


def training_note(runs: Path, model: str, parents: dict[str, str] = PARENT_RUN) -> str:
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
    return "" if scores is None else f"{scores[key]:.{digits}f}"


def row_line(out: Path, results: Path, row: str) -> str:
    model = row.split("+")[0]
    inception = read_json(out / "scores" / f"{row}.inception.json")
    mnist = read_json(out / "scores" / f"{row}.mnist.json")
    quality = inception or mnist  # precision, recall, density, coverage on the Inception features when present
    sample_time = out / "times" / f"{row}.sample"
    failed = out / "samples" / f"{row}.failed"
    if failed.is_file():  # the discriminator rejected every draw: say so instead of scores
        reason = failed.read_text().strip().replace("|", "/")
        return f"| `{row}` | | {reason} |" + " |" * 8 + f" {REFERENCE_FID.get(row, '')} |"
    grid = os.path.relpath(out / "grids" / f"{row}.png", results.parent)
    cells = [
        f"`{row}`", f'<img src="{grid}" width="112">', number(inception, "fid"), number(mnist, "fid"),
        *(number(quality, key) for key in ("precision", "recall", "density", "coverage")),
        "" if mnist is None else f"{mnist['classes_present']}/10, KL {mnist['class_kl']:.3f}",
        training_note(out / "runs", model),
        minutes(float(sample_time.read_text()) if sample_time.is_file() else None),
        REFERENCE_FID.get(row, ""),
    ]
    return "| " + " | ".join(cells) + " |"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--dcgan-epochs", type=int, required=True)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--inception-n", type=int, required=True)
    parser.add_argument("--precision", required=True)
    parser.add_argument("rows", nargs="+")
    args = parser.parse_args()

    floor_inception = read_json(args.out / "scores" / "real-floor.inception.json")
    floor_mnist = read_json(args.out / "scores" / "real-floor.mnist.json")
    features = "Inception pool3" if args.inception_n else "the MNIST classifier (no Inception run)"
    lines = [
        "# Results: the reference study under one protocol",
        "",
        f"Written by `examples/study.sh --epochs {args.epochs} --dcgan-epochs {args.dcgan_epochs} -n {args.n} "
        f"--inception-n {args.inception_n} --precision {args.precision}`. Every model: the course's MLP "
        f"(100-256-512-1024-784), batch 64, seed 0, {args.epochs} epochs; `dcgan-*`: the DCGAN, "
        f"{args.dcgan_epochs} epochs. Each row samples {args.n} images (seed 1); "
        "`+reject` keeps draws whose discriminator confidence r/(1+r) is at least 0.6; `+top` keeps the "
        "best-scored half of 2N draws (a WGAN critic estimates no density ratio to threshold); `+mix` draws z "
        "between two random latents.",
        "",
        f"FID (Inception) compares the first {args.inception_n} generated images with the first "
        f"{args.inception_n} MNIST test images; FID (MNIST) compares {args.n} with {args.n} on the shipped "
        f"classifier's features. Precision, recall, density and coverage (k=3) are on {features}. "
        "FIDs from other protocols (sample counts, resize, features) are not comparable: the reference "
        "numbers came from 10,000 PNGs saved without mapping [-1,1] to [0,1].",
        "",
        "| row | samples | FID (Inception) | FID (MNIST) | precision | recall | density | coverage "
        "| classes | training | sampling | reference FID |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(row_line(args.out, args.results, row) for row in args.rows),
        f"| real-data floor: MNIST train vs test | | {number(floor_inception, 'fid')} | {number(floor_mnist, 'fid')} "
        f"| {number(floor_inception or floor_mnist, 'precision')} | {number(floor_inception or floor_mnist, 'recall')} "
        f"| {number(floor_inception or floor_mnist, 'density')} | {number(floor_inception or floor_mnist, 'coverage')} "
        "| | | | |",
        "",
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
