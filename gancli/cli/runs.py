"""`gan runs` and `gan plot`: the runs of a folder side by side, and their curves as pictures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gancli.cli._io import console, say, user_errors
from gancli.cli.options import AsJson, Runs
from gancli.errors import GancliError


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min" if minutes else f"{seconds:.0f} s"


def _fid(value: float | None, epoch: int | None) -> str:
    return "" if value is None else f"{value:.2f} @{epoch}"


@user_errors("runs")
def runs_table(
    runs_dir: Annotated[str | None, typer.Argument(help="Runs folder \\[default: GANCLI_RUNS, else ./runs].")] = None,
    as_json: AsJson = False,
):
    """List every run of a runs folder: objective and knobs, epochs done of configured, parent,
    last and best evaluated FID (MNIST features) with their epochs, among the epochs evaluated on
    as many images as the latest (FID N: FIDs of different N do not compare), training time, and
    status (running: a process holds the run's lock; finished, interrupted, diverged).

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
    for column in ("run", "objective", "knobs", "epochs", "parent", "FID last", "FID best", "FID N", "time", "status"):
        table.add_column(column, justify="right" if column in ("epochs", "time") or column.startswith("FID") else "left")
    for r in rows:
        table.add_row(r["name"], r["objective"] or "?", r["knobs"], f"{r['epochs']}/{r['configured_epochs']}",
                      Path(r["parent"]).name if r["parent"] else "", _fid(r["last_fid"], r["last_fid_epoch"]),
                      _fid(r["best_fid"], r["best_fid_epoch"]), str(r["fid_n"] or ""), _duration(r["seconds"]), r["status"])
    Console(file=sys.stdout, width=200 if not sys.stdout.isatty() else None).print(table)


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
