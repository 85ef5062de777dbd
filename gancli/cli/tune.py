"""`gan tune`: parse, then call gancli.tuning (Optuna is imported there, by this command only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from gancli.cli._io import duration_text, say, user_errors
from gancli.cli.options import AsJson, DataDir, Device
from gancli.errors import UsageError

Opt = typer.Option
# the choices, typed once here and checked against gancli.tuning's tuples by tests/test_tune.py: this
# module is imported by `gan --help`, which must not import Optuna
SAMPLER = Literal["tpe", "random", "cmaes"]
PRUNER = Literal["median", "hyperband", "none"]
TARGET = Literal["last", "best"]


def _table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"study {result['study']} ({result['storage']}): {result['target']} evaluated FID, lower is better")
    for column in ("trial", "state", "params", "value", "epochs", "time", "run / reason"):
        table.add_column(column, justify="right" if column in ("trial", "value", "epochs", "time") else "left")
    for t in result["trials"]:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        value = f"{t['value']:.2f}" if t["value"] is not None else ""
        where = t["reason"] if t["state"] in ("PRUNED", "FAIL") and t["reason"] else Path(t["run"]).name if t["run"] else ""
        table.add_row(str(t["number"]), t["state"], params, value, str(t["epochs"]), duration_text(t["seconds"]), where)
    console = Console(file=sys.stdout, width=200 if not sys.stdout.isatty() else None)
    console.print(table)
    best = result["best"]
    if best:
        console.print(f"best: trial {best['number']}, FID {best['value']:.2f}, {best['params']}; "
                      f"rerun it with `gan train --config {best['config']}`", highlight=False)
    trained = sum(t["epochs"] for t in result["trials"])
    console.print(f"{len(result['trials'])} trials, {trained} epochs trained", highlight=False)


@user_errors("tune")
def tune(
    space: Annotated[Path | None, typer.Argument(help="The search space, a TOML file (see above) \\[default: the study's own, "
                                                      "with --show].", show_default=False, dir_okay=False)] = None,
    trials: Annotated[int, Opt("--trials", min=0, help="The study's trials in all: a study that has 6 and is asked "
                                                       "for 8 runs 2 more; 0 only reports.")] = 20,
    workers: Annotated[int, Opt("--workers", min=1, help="Trials at once on this machine, each a process with the "
                                                         "cores split evenly between them (torch threads).")] = 1,
    storage: Annotated[str | None, Opt("--storage", help="Optuna storage: an RDB URL (sqlite:///FILE, postgresql://...) "
                                                         "or a journal file (FILE.journal) on a disk several machines "
                                                         "share \\[default: sqlite:///RUNS/tune.db].")] = None,
    study: Annotated[str | None, Opt("--study", help="The study's name \\[default: the space file's stem].")] = None,
    runs: Annotated[str | None, Opt("--runs", help="The study's runs folder, a trial-NNNN run each \\[default: "
                                                   "GANCLI_RUNS or ./runs, then the study's name].")] = None,
    sampler: Annotated[SAMPLER, Opt("--sampler", help="tpe (Bayesian), random, or cmaes (ranges only).")] = "tpe",
    pruner: Annotated[PRUNER, Opt("--pruner", help="median: stop a trial whose FID is worse than the median of the "
                                                   "complete trials at that epoch; hyperband; or none.")] = "median",
    target: Annotated[TARGET, Opt("--target", help="What a trial scores: its last or its best evaluated FID.")] = "last",
    startup_trials: Annotated[int, Opt("--startup-trials", min=0, help="Complete trials before the pruner prunes and "
                                                                       "TPE models (random samples until then).")] = 5,
    warmup_epochs: Annotated[int, Opt("--warmup-epochs", min=0, help="Epochs a trial trains before it can be pruned.")] = 2,
    sampler_seed: Annotated[int, Opt("--sampler-seed", help="The sampler's seed (a continued study draws on from it).")] = 0,
    show: Annotated[bool, Opt("--show", help="Report the study; run no trial.")] = False,
    plot: Annotated[Path | None, Opt("--plot", help="Draw the optimisation history and the parameters' importances "
                                                    "(.png, .svg, .pdf) \\[default: RUNS/tune.png].")] = None,
    as_json: AsJson = False,
    data_dir: DataDir = None,
    device: Device = "auto",
):
    """Search training options with Optuna: each trial an ordinary run, pruned on its per-epoch
    evaluated FID (the run's dataset classifier, 2,000 vs 2,000 test images), minimising its last
    (or best) evaluated FID. Prints the trials and the best, whose config it writes as
    RUNS/BEST.toml for `gan train --config`.

    SPACE.toml holds the options every trial shares, as a config file, then a [search] table:
    a list of choices, or a range {low, high, log, step} (int or float, as the option), each
    optionally `when = {OPTION = VALUE or [VALUES]}`.

    A stopped search continues where it stopped: run the same command again (Ctrl-C saves the
    running trials' checkpoints; they are resumed, never counted twice).

    Examples:
      gan tune examples/tune/mlp.toml --trials 30 --workers 2
      gan tune examples/tune/mlp.toml --show --json | jq .best
      gan tune space.toml --storage /shared/study.journal --trials 100   # one per Slurm array task
    """
    from gancli import tuning
    from gancli.plots import CURVE_FORMATS
    from gancli.runs import runs_root

    if space is None and not show:
        raise UsageError("no SPACE.toml", "name the search space, or pass --show with --study and --runs to report a study")
    name = study or (space.stem if space else None)
    if name is None:
        raise UsageError("--show without SPACE.toml needs --study NAME")
    folder = runs_root(runs) / name if runs is None else Path(runs)
    settings = tuning.Settings(study=name, runs=folder, storage=storage or tuning.default_storage(folder), trials=trials,
                               workers=workers, sampler=sampler, pruner=pruner, target=target,
                               startup_trials=startup_trials, warmup_epochs=warmup_epochs, seed=sampler_seed,
                               data_dir=data_dir, device=device)
    if plot is not None and plot.suffix.lower() not in CURVE_FORMATS:  # before the search, not after it
        raise UsageError(f"--plot {plot}: figures are written as {', '.join(CURVE_FORMATS)}", "e.g. --plot tune.png")
    if show or trials == 0:  # a report: opens the study as it is, creates and records nothing
        study_now = tuning.load_study(settings, None)
        result = tuning.report(study_now, settings)
    else:
        result = tuning.run_study(tuning.read_space(space), settings, say)
        study_now = tuning.load_study(settings, None)
    if result["trials"] and (plot is not None or folder.is_dir()):
        say(f"wrote {tuning.plot_study(study_now, plot or folder / 'tune.png')}")
    if as_json:
        print(json.dumps(result))
    else:
        _table(result)
