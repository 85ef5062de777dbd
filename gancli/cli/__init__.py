"""The `gan` command. Sub-modules import torch lazily so that `gan --help` stays fast."""

import typer

from gancli._version import __version__
from gancli.cli import calibrate, compare, export, runs, sample, score, train, tune
from gancli.cli import filter as filter_cmd

app = typer.Typer(
    name="gan",
    help="Train GANs on MNIST-like images and evaluate them: composable commands over "
    "safetensors checkpoints and samples streams.\n\n"
    "Example: gan train vanilla --epochs 5; gan sample -n 10000 | gan score --json",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMANDS = [
    ("train", train.train),
    ("pretrain", train.pretrain),
    ("resume", train.resume),
    ("sample", sample.sample),
    ("interpolate", sample.interpolate),
    ("filter", filter_cmd.filter_images),
    ("score", score.score),
    ("compare", compare.compare),
    ("calibrate", calibrate.calibrate),
    ("export", export.export),
    ("runs", runs.runs_table),
    ("config", runs.show_config),
    ("plot", runs.plot),
    ("tune", tune.tune),
]
for name, function in COMMANDS:
    app.command(name)(function)


def _version(value: bool):
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")):
    pass


def main() -> None:
    app()
