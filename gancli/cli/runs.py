"""`gan runs` and `gan plot`: the runs of a folder side by side, and their curves as pictures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gancli.cli._io import classes_text, console, duration_text, say, user_errors
from gancli.cli.options import AsJson, Checkpoint, Runs
from gancli.errors import GancliError


def _fid(value: float | None, epoch: int | None) -> str:
    return "" if value is None else f"{value:.2f} @{epoch}"


@user_errors("runs")
def runs_table(
    runs_dir: Annotated[str | None, typer.Argument(help="Runs folder \\[default: GANCLI_RUNS, else ./runs].")] = None,
    as_json: AsJson = False,
):
    """List every run of a runs folder: objective and knobs, epochs done of configured, parent,
    last and best evaluated FID with their epochs, among the epochs evaluated like the latest (on as
    many images, FID N, and on the same classifier, that of the run's dataset: FIDs of either kind
    do not compare otherwise), the classes the latest evaluation found, training time, and status
    (running: a process holds the run's lock; finished, interrupted, diverged).

    Examples:
      gan runs
      gan runs study/runs --json | jq '.[] | select(.status == "finished") | .best_fid'
    """
    from gancli.runs import list_runs, runs_root

    rows = list_runs(runs_root(runs_dir))
    if as_json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"runs in {runs_root(runs_dir)}")
    for column in ("run", "objective", "knobs", "epochs", "parent", "FID last", "FID best", "FID N", "classes", "time",
                   "status"):
        table.add_column(column, justify="right" if column in ("epochs", "time") or column.startswith("FID") else "left")
    for r in rows:
        table.add_row(r["name"], r["objective"] or "?", r["knobs"], f"{r['epochs']}/{r['configured_epochs']}",
                      Path(r["parent"]).name if r["parent"] else "", _fid(r["last_fid"], r["last_fid_epoch"]),
                      _fid(r["best_fid"], r["best_fid_epoch"]), str(r["fid_n"] or ""),
                      classes_text(r["classes_present"], r["classes_total"], r["classes_missing"]),
                      duration_text(r["seconds"]), r["status"])
    Console(file=sys.stdout, width=200 if not sys.stdout.isatty() else None).print(table)


@user_errors("config")
def show_config(checkpoint: Checkpoint = None, runs: Runs = None):
    """Print a run's config as a TOML file, which `gan train --config` reads back: every option
    by its name (with _ for -), the objective included, so that a run can be repeated bit-exactly
    (on the same data, device, precision and number of CPU threads) or varied from the command line.

    Examples:
      gan config runs/x > x.toml
      gan train --config <(gan config runs/x) --name x-again    # the same run again
      gan train --config x.toml --seed 1                       # the same recipe, another seed
    """
    from gancli.checkpoint import read_header
    from gancli.config import config_toml
    from gancli.runs import resolve_checkpoint

    path = resolve_checkpoint(checkpoint, runs)
    header = read_header(path)
    if header is None:
        raise GancliError(f"{path} is no readable gancli checkpoint", "name a run folder or a checkpoint file")
    history = f"; a child of {header.parent}, whose epochs trained another objective" if header.parent else ""
    sys.stdout.write(f"# {path}: {header.config.label}, {header.progress.epoch} epochs done{history}\n"
                     f"# the config of this checkpoint: gan train --config FILE trains a new run with it, the same run\n"
                     f"# again if no resume changed an option on the way\n{config_toml(header.config)}")


@user_errors("plot")
def plot(
    runs: Annotated[list[str] | None, typer.Argument(help="Run folders \\[default: the latest run].", show_default=False)] = None,
    output: Annotated[Path, typer.Option("-o", "--output",
        help="curves.png, .svg or .pdf; with --grids, an animated .gif.")] = Path("curves.png"),
    grids: Annotated[bool, typer.Option("--grids", help="Animate one run's per-epoch grids into a GIF instead.")] = False,
    as_json: AsJson = False,
    runs_folder: Runs = None,
):
    """Draw training curves of one or several runs on shared axes: D and G loss, D accuracy,
    gradient norms, the Wasserstein estimate (WGAN), the evaluated FID, precision and recall, and
    the learning rate and mode-seeking weight when they vary. A child run (resume --div) continues
    its parent's curve; a dotted line marks the switch. --json prints the series drawn.

    Examples:
      gan plot                                     # the latest run -> curves.png
      gan plot runs/js runs/kl runs/pearson -o divergences.svg
      gan plot runs/js-then-kl --grids -o evolution.gif
    """
    from gancli.plots import grids_animation, plot_curves
    from gancli.runs import runs_root

    folders = [Path(r) for r in runs] if runs else [(runs_root(runs_folder) / "latest").resolve()]
    for folder in folders:
        if not folder.is_dir():
            raise GancliError(f"no run folder {folder}", "pass runs/NAME, or train one with `gan train`")
    if not output.parent.is_dir():
        raise GancliError(f"-o {output}: no folder {output.parent}", "create it first")
    if grids:
        if len(folders) != 1:
            raise GancliError(f"--grids animates one run, got {len(folders)}", "pass one run folder")
        drawn = {"output": str(output), "frames": grids_animation(folders[0], output, warn=lambda m: say(f"warning: {m}"))}
        console.print(f"wrote {drawn['frames']}-frame animation to {output}", highlight=False)
    else:
        drawn = plot_curves(folders, output)
        console.print(f"wrote {output}: {', '.join(drawn['panels'])}", highlight=False)
    if as_json:
        print(json.dumps(drawn))
