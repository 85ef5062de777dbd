"""Write frontier.sh's page (examples/frontier.md) from its scores/*.json and run logs: per target its
recipe, its score over the seeds that have one, against the target and the anchors; then the ablation.

    python examples/frontier_table.py OUT RESULTS --recipes DIR -n N --inception-n M ROW...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from results_table import read_json, write_page
from tune_table import search_lines, space_epochs


@dataclass(frozen=True)
class Target:
    recipe: str
    bar: str  # what the issue asks, in words
    anchors: str  # the published and earlier numbers it is measured against

    def met(self, fid: float, scores: dict, classes: dict) -> bool:
        bars = {"mnist-conv": fid <= 5 and classes.get("class_kl", 1) <= 0.02 and scores["recall"] >= 0.7,
                "mnist-mlp": fid <= 8 and scores["precision"] >= 0.7 and scores["recall"] >= 0.5,
                "fashion-conv": fid <= 15,
                "mnist-mlp-wgan-clip": fid < 87.54}
        return bars[self.recipe]


TARGETS = {
    "mnist-conv": Target("mnist-conv", "FID <= 5, class KL <= 0.02, recall >= 0.7",
                         "Lucic et al. 2018: WGAN (clipping) 6.7, NS-GAN 6.8, DRAGAN 7.6; gancli's DCGAN 9.40"),
    "mnist-mlp": Target("mnist-mlp", "FID <= 8, precision >= 0.7, recall >= 0.5",
                        "gancli's best (squared Hellinger, EMA) 12.60 +- 0.45; the course's best entry 17.02"),
    "fashion-conv": Target("fashion-conv", "FID <= 15", "Lucic et al. 2018: about 21 to 31"),
    "mnist-mlp-wgan-clip": Target("mnist-mlp-wgan-clip", "FID below 87.54",
                                  "the reference students' WGAN 87.54; gancli's WGAN at its defaults 111.66"),
}
SEED = re.compile(r"-seed\d+$")


def run_log(out: Path, row: str) -> list[dict]:
    log = out / "logs" / f"{row}.jsonl"  # frontier.sh's committed copy of the run's log
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []


def hours(out: Path, row: str) -> float:
    """The row's training time (its epochs and their evaluations), from its log."""
    return sum(r.get("seconds", 0) + r.get("eval_seconds", 0) for r in run_log(out, row)) / 3600


def classifier_of(out: Path, row: str) -> dict | None:
    """ROW's scores on its dataset's classifier (scores/ROW.DATA.json, beside its Inception and calibration files)."""
    found = [s for p in sorted((out / "scores").glob(f"{row}.*.json")) if (s := read_json(p)).get("extractor", "").endswith("-classifier")]
    return found[0] if found else None


def inception_of(out: Path, row: str) -> dict | None:
    """ROW's scores on the Inception (scores/ROW.inception.json)."""
    return read_json(out / "scores" / f"{row}.inception.json")


def mean_std(values: list[float]) -> str:
    return f"{values[0]:.2f}" if len(values) == 1 else f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def target_line(out: Path, name: str, target: Target, rows: list[str], sampling: str = "") -> str:
    """The target's line for a way of sampling ("" or frontier.sh's "+drs"): its trained rows' scores,
    averaged; the verdict on the Inception's."""
    name += sampling
    rows = [r for r in rows if run_log(out, r) and (inception_of(out, r + sampling) or classifier_of(out, r + sampling))]
    if not rows:
        return f"| {name} | {target.bar} | 0 | | | | | | | | not yet run | {target.anchors} |"
    inception = [s for r in rows if (s := inception_of(out, r + sampling))]
    classes = [c for r in rows if (c := classifier_of(out, r + sampling))]
    mean = lambda found, key: statistics.mean(s[key] for s in found)
    if len(inception) == len(rows):
        fid = statistics.mean(s["fid"] for s in inception)
        verdict = "met" if target.met(fid, {k: mean(inception, k) for k in ("precision", "recall")},
                                      {"class_kl": mean(classes, "class_kl")} if classes else {}) else "missed"
        verdict += "" if len(rows) >= 3 else f" ({len(rows)} of 3 seeds)"
    else:
        verdict = "no Inception score yet"
    cells = [name, target.bar, str(len(rows)),
             mean_std([s["fid"] for s in inception]) if inception else "",
             *(f"{mean(inception, k):.3f}" if inception else "" for k in ("precision", "recall")),
             mean_std([c["fid"] for c in classes]) if classes else "",
             f"{mean(classes, 'class_kl'):.4f}" if classes else "",
             ", ".join(map(str, sorted({run_log(out, r)[-1]["epoch"] for r in rows}))),
             f"{statistics.mean(hours(out, r) for r in rows):.2f}", verdict, target.anchors]
    return "| " + " | ".join(cells) + " |"


def ablation_line(out: Path, row: str) -> str:
    inception, classes, log = inception_of(out, row), classifier_of(out, row), run_log(out, row)
    if not log:
        return f"| {row} | not yet run | | | | | | |"
    cells = [f"{inception['fid']:.2f}", f"{inception['precision']:.3f}", f"{inception['recall']:.3f}"] if inception else ["", "", ""]
    cells += [f"{classes['fid']:.2f}", f"{classes['class_kl']:.4f}"] if classes else ["", ""]
    return f"| {row} | " + " | ".join(cells) + f" | {log[-1]['epoch']} | {hours(out, row):.2f} |"


def floor_line(path: Path) -> str:
    scores = json.loads(path.read_text())
    data = path.name.removeprefix("real-floor-").removesuffix(".inception.json")
    return (f"Real-data floor, {data} (its first {scores['n_generated']:,} training images against its test split): "
            f"Inception FID {scores['fid']:.2f}, precision {scores['precision']:.3f}, recall {scores['recall']:.3f}.")


def search_section(folder: Path, space: Path, page: Path) -> list[str]:
    """A target's search (frontier.sh --search), where it has one: its space file and its trials."""
    study = read_json(folder / "study.json")
    if study is None:
        return []
    return ["", f"## Search: {folder.name} ([{os.path.relpath(space, page)}]({os.path.relpath(space, page)}))", "",
            *search_lines(study, space_epochs(space), os.path.relpath(folder, page))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("rows", nargs="+")
    parser.add_argument("--recipes", type=Path, required=True)
    parser.add_argument("--spaces", type=Path, required=True)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--inception-n", type=int, required=True)
    args = parser.parse_args()
    out, where, n, inception_n = args.out, os.path.relpath(args.recipes, args.results.parent), f"{args.n:,}", f"{args.inception_n:,}"
    lines = [
        "# The frontier: gancli against the best published numbers",
        "",
        f"Written by `examples/frontier.sh`. Protocol: {inception_n} samples (seed 1, from the moving average where "
        f"the recipe keeps one) against the first {inception_n} test images of the row's dataset, TF-2015 Inception "
        f"pool3 (bf16 autocast on CPUs that have it), grey tiled to 3 channels; classifier FID and class balance from "
        f"{n} samples against as many test images on the dataset's own classifier (class KL: KL(histogram || "
        "uniform)). `+drs`: the same runs sampled through discriminator rejection sampling (Azadi et al. 2019) "
        "after `gan calibrate` on the first N test images. A target is met when the mean over its 3 training seeds "
        "meets every bar; a target with fewer seeds so far says so.",
        "",
        "| target | bar | seeds | Inception FID | precision | recall | classifier FID | class KL | epochs | hours / seed | met "
        "| anchors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        *(target_line(out, name, target, [r for r in args.rows if SEED.sub("", r) == name], sampling)
          for name, target in TARGETS.items() for sampling in ("", "+drs")),
        *("\n" + floor_line(path) for path in sorted((out / "scores").glob("real-floor-*.inception.json"))),
        "", "## The ablation", "",
        "Each row trains a recipe with one change (frontier.sh's ROWS say which); its baseline is the recipe's seed-0 row "
        "(`mnist-conv`, `fashion-conv`, `mnist-mlp`: the targets' first seed, scores/ROW.*.json); a row that also sets "
        "`--epochs` is read against the recipe at that budget (`ablation-fashion-conv-lr-decay` against "
        "`ablation-fashion-conv-20-epochs`), and one that pins what a recipe has since changed against the recipe "
        "of its day: the MNIST conv rows of 20 epochs, and the 30-epoch one without R1, against "
        "`ablation-mnist-conv-20-epochs-no-r1` (MNIST's recipe until R1 at 0.1 for 60 epochs).",
        "", "| row | Inception FID | precision | recall | classifier FID | class KL | epochs | hours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(ablation_line(out, row) for row in args.rows if row.startswith("ablation-")),
    ]
    for name in TARGETS:
        lines += search_section(out / "search" / name, args.spaces / f"{name}.toml", args.results.parent)
    for name in TARGETS:
        lines += ["", f"## Recipe: {name} ([{where}/{name}.toml]({where}/{name}.toml))", "", "```toml",
                  (args.recipes / f"{name}.toml").read_text().strip(), "```"]
    write_page(args.results, lines)


if __name__ == "__main__":
    main()
