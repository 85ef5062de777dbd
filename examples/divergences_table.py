"""Write divergences.sh's table from its scores/*.json and run logs.

    python examples/divergences_table.py OUT RESULTS --epochs E --kl-epochs K -n N ROW...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from results_table import best_evaluated, last_record, number, read_json, training_note, write_page

PARENTS = {"js6-kl": "js6"}


def row_line(out: Path, results: Path, row: str) -> str:
    model = row.split("+")[0]
    mnist = read_json(out / "scores" / f"{row}.mnist.json")
    inception = read_json(out / "scores" / f"{row}.inception.json")
    last = last_record(out / "runs", model)
    grid = out / "grids" / f"{row}.png"
    failed = out / "samples" / f"{row}.failed"
    picture = f'<img src="{os.path.relpath(grid, results.parent)}" width="112">' if grid.is_file() else ""
    if failed.is_file():  # the discriminator rejected (nearly) every draw: the reason instead of a picture
        picture = failed.read_text().strip().replace("|", "/")
    accuracy = f"{last['d_acc_real']:.2f} / {last['d_acc_fake']:.2f}" if "d_acc_real" in last else ""
    cells = [f"`{row}`", picture, number(mnist, "fid"), number(mnist, "precision"), number(mnist, "recall"),
             "" if mnist is None else f"{mnist['classes_present']}/10, KL {mnist['class_kl']:.3f}",
             number(inception, "fid"), accuracy, best_evaluated(out / "runs", model), str(last.get("epoch", 0)),
             training_note(out / "runs", model, PARENTS)]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--kl-epochs", type=int, required=True)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("rows", nargs="+")
    args = parser.parse_args()
    lines = [
        "# Every f-divergence at its defaults",
        "",
        f"Written by `examples/divergences.sh --epochs {args.epochs} --kl-epochs {args.kl_epochs} -n {args.n}`. "
        f"Each row: `gan train fgan --div NAME --epochs {args.epochs}` with no other option (seed 0 unless the row "
        "says seed1), the course MLP, batch 64, on real MNIST; then "
        f"{args.n} samples (seed 1) scored with the shipped MNIST classifier's features against the first {args.n} "
        "MNIST test images (FID, precision and recall with k=3, class coverage). D accuracy is the last epoch's mean "
        "share of real and of fake images the discriminator got right (threshold f'(1) on g_f(v)). "
        "`training` names the epoch where the divergence guard stopped a run, if it did. `best epoch` is the lowest "
        "FID of the per-epoch evaluation (2,000 samples against 2,000 MNIST test images, so higher than the 10,000 "
        "column) and its epoch; empty for rows trained before gancli had it. `gan` and `js` train identically: "
        "their g_f and f* differ by constants (Nowozin et al. 2016, table 2), so their gradients are the same.",
        "",
        f"`js6-kl`: the headline pipeline, `gan train fgan --div js --epochs 6` then `gan resume --div kl --epochs "
        f"{args.kl_epochs}`; its Inception FID compares {args.n} samples with the 10,000 MNIST test images "
        "(the reference study reported 44.36 for JS then KL at 100 epochs, on its own protocol).",
        "",
        "| run | samples | FID (MNIST) | precision | recall | classes | FID (Inception) | D accuracy real / fake "
        "| best epoch | epochs | training |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(row_line(args.out, args.results, row) for row in [*args.rows, "js6-kl", "js6-kl+reject"]),
        "",
    ]
    write_page(args.results, lines)


if __name__ == "__main__":
    main()
