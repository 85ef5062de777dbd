"""`gan train`, `gan pretrain`, `gan resume`: parse, then call the library (training.py)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from gancli.cli._io import console, user_errors
from gancli.cli.options import Checkpoint, DataDir, Device, Epochs, Name, Objective, Runs, UntilEpoch, training_knobs
from gancli.config import make_config, validate

Opt = typer.Option


def _progress_callbacks(state, total_batches: int):
    """A rich progress bar on stderr (epoch, step, losses, images/s, ETA) and a line per epoch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[speed]} img/s"),
                        TimeRemainingColumn(), console=console, transient=True,
                        disable=not console.is_terminal)
    epochs = state.config.epochs - state.epoch
    task = progress.add_task("train", total=epochs * total_batches, completed=state.batch_in_epoch,
                             epoch=f"{state.epoch + 1}/{state.config.epochs}", losses="", speed="-")
    last = [time.perf_counter(), 0]

    def on_step(state, scalars):
        last[1] += 1
        now = time.perf_counter()
        if now - last[0] >= 0.25:
            speed = last[1] * state.config.batch_size / (now - last[0])
            losses = " ".join(f"{k[:1].upper()} {v:+.3f}" for k, v in scalars.items() if k.endswith("_loss"))
            progress.update(task, advance=last[1], losses=losses, speed=f"{speed:,.0f}",
                            epoch=f"{state.epoch + 1}/{state.config.epochs}")
            last[:] = [now, 0]

    def on_epoch(state, record):
        parts = [f"{k} {record[k]:.4f}" for k in ("d_loss", "g_loss", "wasserstein") if k in record]
        parts.append(f"D right on {record['d_acc_real']:.0%} of real, {record['d_acc_fake']:.0%} of fake")
        parts.append(f"{record['images_per_s']:,.0f} img/s, {record['seconds']:.1f} s")
        if "fid" in record:
            parts.append(f"FID {record['fid']:.2f}{' (best)' if record['best'] else ''}, precision {record['precision']:.2f}, "
                         f"recall {record['recall']:.2f}, {record['classes_present']}/10 digits ({record['eval_seconds']:.1f} s)")
        console.print(f"epoch {record['epoch']}/{state.config.epochs}: {', '.join(parts)}", highlight=False)

    return progress, on_step, on_epoch


def _evaluator(config, data_dir: str | None, device, new_run: bool):
    """The per-epoch evaluation against MNIST test, or None when it is off (a new run on other data says why)."""
    from gancli.config import mnist_data
    from gancli.data import load_images
    from gancli.errors import GancliError
    from gancli.evaluation import make_evaluator

    if not config.eval_every:
        if new_run and not mnist_data(config.data):
            console.print(f"per-epoch evaluation off: the shipped classifier knows digits, not {Path(config.data).name}",
                          highlight=False)
        return None
    try:
        reference = load_images("mnist:test", data_dir)
    except GancliError as e:
        raise GancliError(f"the per-epoch evaluation needs MNIST's test split: {e.message}",
                          "put t10k-images-idx3-ubyte(.gz) beside the training files, or pass --eval-every 0") from None
    return make_evaluator(config, reference, device, warn=lambda message: console.print(f"warning: {message}", highlight=False))


def run_training(state, images, run: Path, data_dir: str | None, notes: list[str] = ()) -> None:
    """Train with a progress bar and a line per epoch; `notes` (what resume decided) are printed once
    the data and the evaluation are known to work, so that a refused resume ends in its one error line."""
    from gancli.runs import CHECKPOINT
    from gancli.training import check_data
    from gancli.training import train as train_loop

    check_data(state.config, images)
    evaluate = _evaluator(state.config, data_dir, state.device, new_run=state.step == 0)
    for note in notes:
        console.print(note, highlight=False)
    console.print(f"run {run} ({state.config.label}, {state.config.arch}, {images.shape[0]} images, "
                  f"epochs {state.epoch + 1}..{state.config.epochs}, device {state.device})", highlight=False)
    progress, on_step, on_epoch = _progress_callbacks(state, images.shape[0] // state.config.batch_size)
    with progress:
        train_loop(state, images, run, on_step=on_step, on_epoch=on_epoch, evaluate=evaluate)
    console.print(f"done: {run / CHECKPOINT}", highlight=False)


def start_run(objective: str, changes: dict, *, epochs: int | None, data_dir: str | None, runs: str | None,
              name: str | None, device: str) -> None:
    from gancli.data import load_images
    from gancli.runs import discarded_unless_saved, new_run_dir, runs_root
    from gancli.training import new_state

    config = make_config(objective, epochs=epochs, **changes)  # bad options fail before the data loads
    images = load_images(config.data, data_dir)
    config = validate(replace(config, image_shape=tuple(images.shape[1:])))
    state = new_state(config, device)
    run = new_run_dir(runs_root(runs), name, config.label)
    with discarded_unless_saved(run, new=True):
        run_training(state, images, run, data_dir)


@user_errors("train")
@training_knobs()
def train(objective: Objective, epochs: Epochs = None, name: Name = None, runs: Runs = None,
          data_dir: DataDir = None, device: Device = "auto", *, changes: dict):
    """Train a new run: vanilla (non-saturating GAN), fgan (--div), wgan (weight clipping) or wgan-gp.

    Writes runs/NAME/checkpoint.safetensors after every epoch, log.jsonl and grids/epoch-NNN.png;
    runs/latest points at the run once its first epoch is saved. On MNIST, every epoch is scored
    (FID, precision, recall on 2,000 samples; --eval-every) and best.safetensors keeps the best
    epoch. Ctrl-C saves a resumable checkpoint (exit 130). --epochs defaults to 20.

    Examples:
      gan train vanilla --epochs 5 --data-dir ../data/mnist
      gan train fgan --div kl --clip-grad-norm 1 --d-weight-decay 1e-4
      gan train wgan-gp --arch dcgan --epochs 20
      gan train vanilla --ms-lambda 0.05 --ms-step 0.01 --ms-every 10 --d-dropout 0.3
    """
    start_run(objective, changes, epochs=epochs, data_dir=data_dir, runs=runs, name=name, device=device)


@user_errors("pretrain")
@training_knobs(leave_out=("div", "alpha"))
def pretrain(epochs: Epochs = 6,
             name: Name = None, runs: Runs = None, data_dir: DataDir = None, device: Device = "auto", *, changes: dict):
    """Pre-train with f-GAN Jensen-Shannon, the stable start before switching divergence.

    Examples:
      gan pretrain --epochs 6 --d-weight-decay 1e-4 --clip-grad-norm 1
      gan resume --div kl --epochs 20      # continue the pre-trained run with KL, as a child run
    """
    start_run("fgan", {**changes, "div": "js"}, epochs=epochs, data_dir=data_dir, runs=runs, name=name, device=device)


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

    - Any other checkpoint file (a copy, a snapshot): a child run too;
    the file is never overwritten.

    - Fixed when the run started, refused when different: the
    architecture (--arch, --z-dim, widths, --d-dropout, --spectral-norm)
    and --seed; --batch-size changes only between epochs.

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
    from gancli.data import load_images
    from gancli.runs import discarded_unless_saved, resolve_checkpoint
    from gancli.training import resume_run

    resumed = resume_run(resolve_checkpoint(checkpoint, runs), changes, epochs=epochs, until_epoch=until_epoch,
                         runs=runs, name=name, device=device, reset_optimizer=reset_optimizer)
    with discarded_unless_saved(resumed.run, new=resumed.child):
        run_training(resumed.state, load_images(resumed.state.config.data, data_dir), resumed.run, data_dir, resumed.notes)
