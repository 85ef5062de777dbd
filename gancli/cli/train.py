"""`gan train`, `gan pretrain`, `gan resume`."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from gancli.cli._io import console, parse_floats, parse_ints, user_errors
from gancli.config import TrainConfig, make_config, validate
from gancli.errors import GancliError

Opt = typer.Option
DataOpt = Annotated[Optional[str], Opt("--data", help="Dataset name (mnist, mnist:test, fashion-mnist), image folder or samples .safetensors.")]
DataDir = Annotated[Optional[str], Opt("--data-dir", help="Folder with the IDX files (else GANCLI_DATA, cache, download).")]
Runs = Annotated[Optional[str], Opt("--runs", help="Runs folder (else GANCLI_RUNS, else ./runs).")]
Name = Annotated[Optional[str], Opt("--name", help="Run name (default: objective and time).")]
Epochs = Annotated[Optional[int], Opt("--epochs", help="Epochs to train.")]
BatchSize = Annotated[Optional[int], Opt("--batch-size", help="Batch size \\[default: 64].")]
Seed = Annotated[Optional[int], Opt("--seed", help="Seed: a run is reproducible \\[default: 0].")]
Device = Annotated[str, Opt("--device", help="auto (prefers CUDA), cpu or cuda.")]
Arch = Annotated[Optional[str], Opt("--arch", help="mlp (100-256-512-1024-784) or dcgan.")]
ZDim = Annotated[Optional[int], Opt("--z-dim", help="Latent size \\[default: 100].")]
GHidden = Annotated[Optional[str], Opt("--g-hidden", help="MLP generator widths \\[default: 256,512,1024].")]
DHidden = Annotated[Optional[str], Opt("--d-hidden", help="MLP discriminator widths \\[default: 1024,512,256].")]
ConvWidth = Annotated[Optional[int], Opt("--conv-width", help="DCGAN base channels \\[default: 64].")]
Div = Annotated[Optional[str], Opt("--div", help="f-divergence: kl, reverse-kl, pearson, neyman, squared-hellinger, jeffrey, js, gan, total-variation, alpha.")]
Alpha = Annotated[Optional[float], Opt("--alpha", help="Order of the alpha divergence (not 0 or 1) \\[default: 0.5].")]
GLoss = Annotated[Optional[str], Opt("--g-loss", help="alternative (-E\\[g_f(v)], default) or minimax.")]
Optimizer = Annotated[Optional[str], Opt("--optimizer", help="adam, rmsprop or sgd \\[default: per objective].")]
Lr = Annotated[Optional[float], Opt("--lr", help="Learning rate of both networks \\[default: per objective].")]
LrD = Annotated[Optional[float], Opt("--lr-d", help="Discriminator learning rate.")]
LrG = Annotated[Optional[float], Opt("--lr-g", help="Generator learning rate.")]
Betas = Annotated[Optional[str], Opt("--betas", help="Adam betas, e.g. 0.5,0.999.")]
DWeightDecay = Annotated[Optional[float], Opt("--d-weight-decay", help="Discriminator weight decay.")]
ClipGradNorm = Annotated[Optional[float], Opt("--clip-grad-norm", help="Rescale gradients to norm C when their norm is >= C.")]
NCritic = Annotated[Optional[int], Opt("--n-critic", help="Discriminator steps per generator step.")]
ClipWeights = Annotated[Optional[float], Opt("--clip-weights", help="WGAN weight clipping c \\[default for wgan: 0.01].")]
GpLambda = Annotated[Optional[float], Opt("--gp-lambda", help="Gradient penalty weight \\[default for wgan-gp: 10].")]
MsLambda = Annotated[Optional[float], Opt("--ms-lambda", help="Mode-seeking (MSGAN) weight; 0 turns it off.")]
MsStep = Annotated[Optional[float], Opt("--ms-step", help="Add this to the mode-seeking weight every --ms-every epochs.")]
MsEvery = Annotated[Optional[int], Opt("--ms-every", help="Epochs between mode-seeking weight steps \\[default: 10].")]
Precision = Annotated[Optional[str], Opt("--precision", help="fp32 (default) or bf16 autocast: faster on CPUs with bf16, other numerics.")]
DDropout = Annotated[Optional[float], Opt("--d-dropout", help="Dropout in the discriminator, e.g. 0.3.")]


def _schedule(lr, lr_d, lr_g, betas, **rest) -> dict:
    """Option values -> TrainConfig fields (None: not given)."""
    return {
        "lr_d": lr_d if lr_d is not None else lr,
        "lr_g": lr_g if lr_g is not None else lr,
        "betas": parse_floats(betas, "--betas", 2) if betas else None,
        **rest,
    }


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
        console.print(f"epoch {record['epoch']}/{state.config.epochs}: {', '.join(parts)}, "
                      f"{record['images_per_s']:,.0f} img/s, {record['seconds']:.1f} s", highlight=False)

    return progress, on_step, on_epoch


def run_training(state, images, run: Path) -> None:
    from gancli.runs import set_latest
    from gancli.training import train as train_loop

    set_latest(run)
    console.print(f"run {run} ({state.config.label}, {state.config.arch}, {images.shape[0]} images, "
                  f"epochs {state.epoch + 1}..{state.config.epochs}, device {state.device})", highlight=False)
    progress, on_step, on_epoch = _progress_callbacks(state, images.shape[0] // state.config.batch_size)
    with progress:
        train_loop(state, images, run, on_step=on_step, on_epoch=on_epoch)
    console.print(f"done: {run / 'checkpoint.safetensors'}", highlight=False)


def start_run(config_fields: dict, data: str | None, data_dir: str | None, runs: str | None,
              name: str | None, device: str, objective: str) -> None:
    from gancli.data import load_images
    from gancli.runs import new_run_dir, runs_root
    from gancli.training import new_state

    source = data or TrainConfig.data
    config = make_config(objective, data=source, **config_fields)  # bad options fail before the data loads
    images = load_images(source, data_dir)
    config = validate(replace(config, image_shape=tuple(images.shape[1:])))
    state = new_state(config, device)
    run_training(state, images, new_run_dir(runs_root(runs), name, config.label))


@user_errors("train")
def train(
    objective: Annotated[str, typer.Argument(help="vanilla, fgan, wgan or wgan-gp.")],
    data: DataOpt = None, data_dir: DataDir = None, runs: Runs = None, name: Name = None,
    epochs: Epochs = None, batch_size: BatchSize = None, seed: Seed = None, device: Device = "auto", precision: Precision = None,
    arch: Arch = None, z_dim: ZDim = None, g_hidden: GHidden = None, d_hidden: DHidden = None,
    conv_width: ConvWidth = None, d_dropout: DDropout = None,
    div: Div = None, alpha: Alpha = None, g_loss: GLoss = None,
    optimizer: Optimizer = None, lr: Lr = None, lr_d: LrD = None, lr_g: LrG = None, betas: Betas = None,
    d_weight_decay: DWeightDecay = None, clip_grad_norm: ClipGradNorm = None, n_critic: NCritic = None,
    clip_weights: ClipWeights = None, gp_lambda: GpLambda = None,
    ms_lambda: MsLambda = None, ms_step: MsStep = None, ms_every: MsEvery = None,
):
    """Train a new run: vanilla (non-saturating GAN), fgan (--div), wgan (weight clipping) or wgan-gp.

    Writes runs/NAME/checkpoint.safetensors after every epoch, log.jsonl and grids/epoch-NNN.png,
    and points runs/latest at the run. Ctrl-C saves a resumable checkpoint (exit 130).

    Examples:
      gan train vanilla --epochs 5 --data-dir ../data/mnist
      gan train fgan --div kl --clip-grad-norm 1 --d-weight-decay 1e-4
      gan train wgan-gp --arch dcgan --epochs 20
      gan train vanilla --ms-lambda 0.05 --ms-step 0.01 --ms-every 10 --d-dropout 0.3
    """
    fields = _schedule(lr, lr_d, lr_g, betas, epochs=epochs, batch_size=batch_size, seed=seed, arch=arch,
                       z_dim=z_dim, g_hidden=parse_ints(g_hidden, "--g-hidden") if g_hidden else None,
                       d_hidden=parse_ints(d_hidden, "--d-hidden") if d_hidden else None, conv_width=conv_width,
                       d_dropout=d_dropout, precision=precision, div=div, alpha=alpha, g_loss=g_loss, optimizer=optimizer,
                       d_weight_decay=d_weight_decay, clip_grad_norm=clip_grad_norm, n_critic=n_critic,
                       clip_weights=clip_weights, gp_lambda=gp_lambda, ms_lambda=ms_lambda, ms_step=ms_step,
                       ms_every=ms_every)
    if div is not None and objective != "fgan":
        raise GancliError(f"--div applies to fgan, not {objective}", "use `gan train fgan --div ...`")
    start_run(fields, data, data_dir, runs, name, device, objective)


@user_errors("pretrain")
def pretrain(
    data: DataOpt = None, data_dir: DataDir = None, runs: Runs = None, name: Name = None,
    epochs: Annotated[int, Opt("--epochs", help="Epochs of JS pre-training.")] = 6,
    batch_size: BatchSize = None, seed: Seed = None, device: Device = "auto", precision: Precision = None,
    arch: Arch = None, z_dim: ZDim = None, g_hidden: GHidden = None, d_hidden: DHidden = None,
    conv_width: ConvWidth = None, d_dropout: DDropout = None,
    optimizer: Optimizer = None, lr: Lr = None, lr_d: LrD = None, lr_g: LrG = None, betas: Betas = None,
    d_weight_decay: DWeightDecay = None, clip_grad_norm: ClipGradNorm = None,
):
    """Pre-train with f-GAN Jensen-Shannon, the stable start before switching divergence.

    Examples:
      gan pretrain --epochs 6 --d-weight-decay 1e-4 --clip-grad-norm 1
      gan resume --div kl --epochs 20      # continue the pre-trained run with KL
    """
    fields = _schedule(lr, lr_d, lr_g, betas, epochs=epochs, batch_size=batch_size, seed=seed, arch=arch,
                       z_dim=z_dim, g_hidden=parse_ints(g_hidden, "--g-hidden") if g_hidden else None,
                       d_hidden=parse_ints(d_hidden, "--d-hidden") if d_hidden else None, conv_width=conv_width,
                       d_dropout=d_dropout, precision=precision, div="js", optimizer=optimizer, d_weight_decay=d_weight_decay,
                       clip_grad_norm=clip_grad_norm)
    start_run(fields, data, data_dir, runs, name, device, "fgan")


@user_errors("resume")
def resume(
    checkpoint: Annotated[Optional[str], typer.Argument(help="Checkpoint or run folder \\[default: the latest run].")] = None,
    epochs: Annotated[Optional[int], Opt("--epochs", help="Epochs MORE \\[default: finish an interrupted run, else as many as it was configured for].")] = None,
    div: Annotated[Optional[str], Opt("--div", help="Switch to this f-divergence: a new run whose parent is CHECKPOINT.")] = None,
    alpha: Alpha = None, g_loss: GLoss = None,
    reset_optimizer: Annotated[bool, Opt("--reset-optimizer", help="Drop the optimizer moments.")] = False,
    data: DataOpt = None, data_dir: DataDir = None, runs: Runs = None, name: Name = None, device: Device = "auto",
    precision: Precision = None, optimizer: Optimizer = None, lr: Lr = None, lr_d: LrD = None, lr_g: LrG = None, betas: Betas = None,
    d_weight_decay: DWeightDecay = None, clip_grad_norm: ClipGradNorm = None, n_critic: NCritic = None,
    clip_weights: ClipWeights = None, gp_lambda: GpLambda = None, d_dropout: DDropout = None,
    ms_lambda: MsLambda = None, ms_step: MsStep = None, ms_every: MsEvery = None,
):
    """Continue a run bit-exactly, optionally switched to another divergence or schedule.

    The architecture always comes from the checkpoint. Same objective: the run continues in
    place. Another objective (--div): a new run, the old checkpoint stays untouched.

    Examples:
      gan resume                                   # the latest run, as configured
      gan resume runs/x/checkpoint.safetensors --epochs 10
      gan resume --div kl --epochs 20              # JS pre-training -> KL
    """
    from gancli.data import load_images
    from gancli.runs import new_run_dir, resolve_checkpoint, runs_root, truncate_log
    from gancli.training import load_state

    path = resolve_checkpoint(checkpoint, runs)
    changes = _schedule(lr, lr_d, lr_g, betas, div=div, objective="fgan" if div else None, alpha=alpha,
                        g_loss=g_loss, optimizer=optimizer, d_weight_decay=d_weight_decay,
                        clip_grad_norm=clip_grad_norm, n_critic=n_critic, clip_weights=clip_weights,
                        gp_lambda=gp_lambda, d_dropout=d_dropout, ms_lambda=ms_lambda, ms_step=ms_step,
                        ms_every=ms_every, data=data, precision=precision)
    state, notes = load_state(path, changes, device, reset_optimizer)
    for note in notes:
        console.print(note, highlight=False)
    unfinished = state.epoch < state.config.epochs
    more = epochs if epochs is not None else (state.config.epochs - state.epoch if unfinished else state.config.epochs)
    state.config = replace(state.config, epochs=state.epoch + more)
    images = load_images(state.config.data, data_dir)
    if state.parent == str(path):
        run = new_run_dir(runs_root(runs), name, state.config.label)
    else:
        run = path.parent
        truncate_log(run, state.epoch)
    run_training(state, images, run)
