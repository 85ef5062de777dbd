"""`gan train`, `gan pretrain`, `gan resume`: parse, then call the library (gancli.api)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from gancli.cli._io import classes_text, console, main_process, say, user_errors
from gancli.cli.options import Checkpoint, ConfigFile, DataDir, Device, Epochs, Name, Objective, Runs, UntilEpoch, training_knobs
from gancli.errors import UsageError

Opt = typer.Option


def _epoch_line(state, record: dict) -> str:
    parts = [f"{k} {record[k]:.4f}" for k in ("d_loss", "g_loss", "wasserstein") if k in record]
    parts.append(f"D right on {record['d_acc_real']:.0%} of real, {record['d_acc_fake']:.0%} of fake")
    parts.append(f"{record['images_per_s']:,.0f} img/s, {record['seconds']:.1f} s")
    if "fid" in record:
        parts.append(f"FID {record['fid']:.2f}{' (best)' if record['best'] else ''}, precision {record['precision']:.2f}, "
                     f"recall {record['recall']:.2f}, "
                     f"{classes_text(record['classes_present'], record['classes_total'], record['classes_missing'])}"
                     + (f", {record['class_accuracy']:.0%} of the class asked" if "class_accuracy" in record else "")
                     + f" ({record['eval_seconds']:.1f} s)")
    return f"epoch {record['epoch']}/{state.config.epochs}: {', '.join(parts)}"


@contextmanager
def console_callbacks() -> Iterator:
    """gancli.api.Callbacks: notes, a progress bar (epoch, step, losses, images/s, ETA) and a line per epoch, on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]} img/s"),
                        TimeRemainingColumn(), console=console, transient=True,
                        disable=not console.is_terminal or not main_process())
    task, last = [], [time.perf_counter(), 0]

    def on_start(state, run, batches: int):
        task.append(progress.add_task("train", total=(state.config.epochs - state.epoch) * batches,
                                      completed=state.batch_in_epoch, epoch=f"{state.epoch + 1}/{state.config.epochs}",
                                      losses="", speed="-"))

    def on_step(state, scalars):
        last[1] += 1
        now = time.perf_counter()
        if now - last[0] >= 0.25:
            losses = " ".join(f"{k[:1].upper()} {v:+.3f}" for k, v in scalars.items() if k.endswith("_loss"))
            progress.update(task[0], advance=last[1], losses=losses, epoch=f"{state.epoch + 1}/{state.config.epochs}",
                            speed=f"{last[1] * state.config.batch_size / (now - last[0]):,.0f}")
            last[:] = [now, 0]

    from gancli.api import Callbacks

    with progress:
        yield Callbacks(notify=say, on_start=on_start, on_step=on_step, on_epoch=lambda state, record: say(_epoch_line(state, record)))


@user_errors("train")
@training_knobs()
def train(objective: Objective = None, epochs: Epochs = None, config: ConfigFile = None, name: Name = None,
          runs: Runs = None, data_dir: DataDir = None, device: Device = "auto", *, changes: dict):
    """Train a new run: vanilla (non-saturating GAN), fgan (--div), wgan (weight clipping) or wgan-gp.

    Writes runs/NAME/checkpoint.safetensors after every epoch, log.jsonl and grids/epoch-NNN.png;
    runs/latest points at the run once its first epoch is saved. On MNIST and Fashion-MNIST,
    every epoch is scored on the dataset's classifier (FID, precision, recall, classes on 2,000
    samples; --eval-every) and best.safetensors keeps the best epoch. Ctrl-C saves a resumable
    checkpoint (exit 130). --epochs defaults to 20.

    --config FILE.toml takes the objective and any option from a file; options
    given here override it. `gan config RUN` prints a run's own, so any run
    can be repeated bit-exactly.

    Examples:
      gan train vanilla --epochs 5 --data-dir ../data/mnist
      gan train --config <(gan config runs/x) --name x-again
      gan train fgan --div kl --clip-grad-norm 1 --d-weight-decay 1e-4
      gan train wgan-gp --arch dcgan --epochs 20
      gan train vanilla --arch mlp --d-arch infogan --diffaug translation --ema 0.99
      gan train vanilla --ms-lambda 0.05 --ms-step 0.01 --ms-every 10 --d-dropout 0.3
    """
    from gancli import api
    from gancli.config import other_objective, read_config_file

    given = read_config_file(config) if config else {}
    file_objective, file_epochs = given.pop("objective", None), given.pop("epochs", None)
    if objective and file_objective and objective != file_objective:
        given, dropped = other_objective(given, file_objective, objective)
        if dropped:
            say(f"--config {config}: {file_objective}'s defaults ({', '.join(dropped)}) give way to {objective}'s")
    objective, epochs = objective or file_objective, epochs if epochs is not None else file_epochs
    if objective is None:
        raise UsageError("no objective: name one (vanilla, fgan, wgan, wgan-gp), or give a --config file that does")
    with console_callbacks() as callbacks:
        api.train(objective, epochs=epochs, data_dir=data_dir, runs=runs, name=name, device=device, callbacks=callbacks,
                  **{**given, **changes})


@user_errors("pretrain")
@training_knobs(leave_out=("div", "alpha"))
def pretrain(epochs: Epochs = 6,
             name: Name = None, runs: Runs = None, data_dir: DataDir = None, device: Device = "auto", *, changes: dict):
    """Pre-train with f-GAN Jensen-Shannon, the stable start before switching divergence.

    Examples:
      gan pretrain --epochs 6 --d-weight-decay 1e-4 --clip-grad-norm 1
      gan resume --div kl --epochs 20      # continue the pre-trained run with KL, as a child run
    """
    from gancli import api

    with console_callbacks() as callbacks:
        api.train("fgan", epochs=epochs, data_dir=data_dir, runs=runs, name=name, device=device, callbacks=callbacks,
                  **changes, div="js")


@user_errors("resume")
@training_knobs()
def resume(checkpoint: Checkpoint = None, epochs: Epochs = None, until_epoch: UntilEpoch = None,
           reset_optimizer: Annotated[bool, Opt("--reset-optimizer", help="Drop the optimizer moments.")] = False,
           name: Name = None, runs: Runs = None, data_dir: DataDir = None, device: Device = "auto", *, changes: dict):
    """Continue a run bit-exactly, optionally with another schedule or objective.

    The rules:

    - Same objective, from a run's checkpoint.safetensors: the run
    continues in place.

    - Another objective (--div, --alpha, --g-loss): a new child run in
    the parent's runs folder (--runs overrides); CHECKPOINT, its parent,
    stays untouched. From a Ctrl-C checkpoint, the new objective trains
    the rest of the interrupted epoch.

    - Any other checkpoint file (a copy, a snapshot, a lone
    checkpoint.safetensors outside a run folder): a child run too; the
    file is never overwritten.

    - A run that another process is training now: refused (one writer
    per run; a killed process holds no lock).

    - Fixed when the run started, refused when different: the
    architecture (--arch, --d-arch, --z-dim, widths, --d-dropout, --spectral-norm,
    --conditional) and --seed; --batch-size changes only between epochs.

    - An option not given keeps the checkpoint's value: the defaults
    shown below are a new run's.

    - --epochs N trains N more; --until-epoch E until E in all. Default:
    an interrupted run finishes its configured epochs, a finished one
    trains as many again.

    - runs/latest points at the run once it has saved an epoch.

    Examples:
      gan resume                                   # the latest run, as configured
      gan resume runs/x --epochs 10                # 10 more
      gan resume runs/x --until-epoch 100          # until 100 in all
      gan resume --div kl --epochs 20              # JS pre-training -> KL, a child run
    """
    from gancli import api

    with console_callbacks() as callbacks:
        api.resume(checkpoint, epochs=epochs, until_epoch=until_epoch, reset_optimizer=reset_optimizer, data_dir=data_dir,
                   runs=runs, name=name, device=device, callbacks=callbacks, **changes)
