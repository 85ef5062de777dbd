"""Every option that more than one command takes, defined once; choices come from config.py.

The training knobs (TrainConfig fields a user may set) live in one table, KNOBS: `training_knobs`
adds them to a command's signature, so that train, pretrain and resume list them without
repeating them, and a new knob is one row here plus its use in the library.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from gancli.cli._io import parse_floats, parse_ints
from gancli.config import ARCHS, DEVICES, DIVERGENCES, G_LOSSES, LR_DECAYS, OBJECTIVES, OPTIMIZERS, PRECISIONS

Opt = typer.Option


def must(test: Callable[[Any], bool], what: str) -> Callable[[Any], Any]:
    """An option callback: a given value that fails `test` is a usage error (exit 2) saying it `must be WHAT`."""

    def check(value):
        if value is not None and not test(value):
            raise typer.BadParameter(f"must be {what}")
        return value

    return check


POSITIVE = must(lambda v: v > 0, "above 0")


# Image sources and destinations
Source = Annotated[str, typer.Argument(help="- (stdin stream), samples file, image folder or dataset name (mnist, mnist:test, ...); "
                                              "SOURCE[:N] or SOURCE[A:B] takes those of its images.")]
Checkpoint = Annotated[str | None, typer.Argument(help="Checkpoint or run folder \\[default: the latest run].")]
Output = Annotated[str | None, Opt("-o", "--output",
    help="- (stdout stream), FILE.safetensors or a folder of PNGs \\[default: - when piped].")]
DataDir = Annotated[str | None, Opt("--data-dir", help="Folder with the IDX files (else GANCLI_DATA, then the cache, then a download).")]
Runs = Annotated[str | None, Opt("--runs",
    help="Runs folder: where new runs go and where the latest run is found (else GANCLI_RUNS, else ./runs).")]
Device = Annotated[Literal[DEVICES], Opt("--device", help="auto (CUDA when available), cpu or cuda.")]
PassBatch = Annotated[int | None, Opt("--batch-size", min=1, help="Images per network pass (memory, not results).")]
LatentSeed = Annotated[int, Opt("--seed", help="Latent seed: the same seed gives the same images, whatever --batch-size.")]
Reject = Annotated[float | None, Opt("--reject", callback=must(lambda v: 0 < v < 1, "in (0, 1)"),
    help="Keep samples whose discriminator confidence r/(1+r) >= this, e.g. 0.6.")]
Best = Annotated[bool, Opt("--best", help="Use the run's best.safetensors (its best evaluated epoch, by FID) "
                          "instead of its latest checkpoint.")]
Reference = Annotated[str, Opt("--ref", help="Reference (real) images: any source, e.g. mnist:test.")]
PairCount = Annotated[int, Opt("-n", min=2, help="Use the first N reference images and as many generated ones.")]
RawGenerator = Annotated[bool, Opt("--raw-generator",
    help="Use the generator's own weights, not their moving average (runs trained with --ema).")]
AsJson = Annotated[bool, Opt("--json", help="One JSON object on stdout.")]
KeepTop = Annotated[float | None, Opt("--keep-top", callback=must(lambda v: 0 < v <= 1, "in (0, 1]"),
    help="Keep this fraction with the highest discriminator score (any objective).")]

# Runs and epochs
Objective = Annotated[Literal[OBJECTIVES], typer.Argument(help="vanilla, fgan, wgan or wgan-gp.")]
Name = Annotated[str | None, Opt("--name", help="Name of the new run \\[default: objective and time].")]
Epochs = Annotated[int | None, Opt("--epochs", min=1, help="Epochs to train in this command (on resume: more, on top of those done).")]
UntilEpoch = Annotated[int | None, Opt("--until-epoch", min=1, help="Train until the run has completed this many epochs in all.")]

ARCH_PANEL, OBJECTIVE_PANEL, SCHEDULE_PANEL, EVAL_PANEL = ("Architecture (fixed when a run starts)", "Objective",
                                                           "Data and optimisation", "Evaluation during training")
PARALLEL_PANEL = "Several processes (torchrun --nproc-per-node N -m gancli train ...)"


def _knob(kind, flag: str, text: str, panel: str = SCHEDULE_PANEL, **bounds):
    return Annotated[kind | None, Opt(flag, help=text, rich_help_panel=panel, **bounds)]


# The training knobs: parameter name -> option. Names are TrainConfig fields, except `lr` (both rates).
KNOBS: dict[str, Any] = {
    "data": _knob(str, "--data", "Dataset name (mnist, mnist:test, fashion-mnist, kmnist), image folder or samples file; "
                  "SOURCE[:N] takes its first N images, e.g. mnist[:5000] \\[default: mnist]."),
    "batch_size": _knob(int, "--batch-size", "Images per training step \\[default: 64].", min=1),
    "seed": _knob(int, "--seed", "Seed of the run's randomness (fixed when the run starts) \\[default: 0]."),
    "precision": _knob(Literal[PRECISIONS], "--precision", "fp32 (default) or bf16 autocast: faster on CPUs with bf16, other numerics."),
    "sync_batch_norm": _knob(bool, "--sync-batch-norm/--no-sync-batch-norm",
                             "Under torchrun on GPUs: the DCGAN generator's batch norm over the global batch, not "
                             "each process's part \\[default: off].", PARALLEL_PANEL),
    "arch": _knob(Literal[ARCHS], "--arch", "mlp (100-256-512-1024-784) or dcgan \\[default: mlp].", ARCH_PANEL),
    "z_dim": _knob(int, "--z-dim", "Latent size \\[default: 100].", ARCH_PANEL, min=1),
    "g_hidden": _knob(str, "--g-hidden", "MLP generator widths \\[default: 256,512,1024].", ARCH_PANEL),
    "d_hidden": _knob(str, "--d-hidden", "MLP discriminator widths \\[default: 1024,512,256].", ARCH_PANEL),
    "conv_width": _knob(int, "--conv-width", "DCGAN base channels \\[default: 64].", ARCH_PANEL, min=1),
    "d_dropout": _knob(float, "--d-dropout", "Dropout in the discriminator, e.g. 0.3 \\[default: 0].", ARCH_PANEL,
                       callback=must(lambda v: 0 <= v < 1, "in [0, 1)")),
    "spectral_norm": _knob(bool, "--spectral-norm/--no-spectral-norm",
                           "Spectral normalisation of every D layer (Miyato et al. 2018) \\[default: off].", ARCH_PANEL),
    "div": _knob(Literal[DIVERGENCES], "--div", "f-divergence of fgan (on resume: switch to it, a child run) \\[default: js].",
                 OBJECTIVE_PANEL),
    "alpha": _knob(float, "--alpha", "Order of --div alpha (not 0 or 1) \\[default: 0.5].", OBJECTIVE_PANEL),
    "g_loss": _knob(Literal[G_LOSSES], "--g-loss", "alternative (-E\\[g_f(v)], default) or minimax.", OBJECTIVE_PANEL),
    "optimizer": _knob(Literal[OPTIMIZERS], "--optimizer", "adam, rmsprop or sgd \\[default: per objective]."),
    "lr": _knob(float, "--lr", "Learning rate of both networks \\[default: per objective].", callback=POSITIVE),
    "lr_d": _knob(float, "--lr-d", "Discriminator learning rate (overrides --lr).", callback=POSITIVE),
    "lr_g": _knob(float, "--lr-g", "Generator learning rate (overrides --lr).", callback=POSITIVE),
    "betas": _knob(str, "--betas", "Adam betas, e.g. 0.5,0.999 \\[default: per objective]."),
    "d_weight_decay": _knob(float, "--d-weight-decay", "Discriminator weight decay \\[default: 0].", min=0),
    "clip_grad_norm": _knob(float, "--clip-grad-norm", "Rescale gradients to norm C when their norm is >= C; 0 off.", min=0),
    "n_critic": _knob(int, "--n-critic", "Discriminator steps per generator step \\[default: per objective].", min=1),
    "clip_weights": _knob(float, "--clip-weights", "WGAN weight clipping c; 0 off \\[default for wgan: 0.01].", min=0),
    "gp_lambda": _knob(float, "--gp-lambda", "WGAN-GP gradient penalty weight; 0 off \\[default for wgan-gp: 10].", min=0),
    "ms_lambda": _knob(float, "--ms-lambda", "Mode-seeking (MSGAN) weight; 0 turns it off.", min=0),
    "ms_step": _knob(float, "--ms-step", "Add this to the mode-seeking weight every --ms-every epochs."),
    "ms_every": _knob(int, "--ms-every", "Epochs between mode-seeking weight steps \\[default: 10].", min=1),
    "r1": _knob(float, "--r1", "Zero-centred gradient penalty gamma/2 E||grad D(real)||^2 (R1, Mescheder et al. 2018); "
                "0 off \\[default: 10 for fgan, else 0].", min=0),
    "r1_every": _knob(int, "--r1-every", "Lazy R1: apply it every N-th D step, weighted N (Karras et al. 2020) \\[default: 16].",
                      min=1),
    "lr_warmup": _knob(int, "--lr-warmup", "Epochs of warm-up after a start or a switch: lr/100, then lr/10, half each; 0 off.",
                       min=0),
    "lr_decay": _knob(Literal[LR_DECAYS], "--lr-decay", "After the warm-up, decay lr to --lr-floor by the last epoch \\[default: none]."),
    "lr_floor": _knob(float, "--lr-floor", "The decayed lr's end, a fraction of --lr \\[default: 0].",
                      callback=must(lambda v: 0 <= v <= 1, "in [0, 1]")),
    "ema": _knob(float, "--ema", "Keep a moving average of G's weights with this decay, e.g. 0.999 (warm-up: min(BETA, "
                 "(1+t)/(10+t)) after t steps); sample, interpolate, grids and evaluation use it; 0 off \\[default: 0].",
                 callback=must(lambda v: 0 <= v < 1, "in [0, 1)")),
    "eval_every": _knob(int, "--eval-every", "Score --eval-n fixed samples after every N-th epoch and the last: FID, precision, "
                        "recall, digit coverage on the MNIST classifier's features vs MNIST test, in log.jsonl; keeps "
                        "best.safetensors; 0 off \\[default: 1 on MNIST data, else 0].", EVAL_PANEL, min=0),
    "eval_n": _knob(int, "--eval-n", "Images per evaluation, against as many MNIST test images \\[default: 2000].", EVAL_PANEL,
                    min=2),
}


def config_changes(values: dict[str, Any]) -> dict[str, Any]:
    """Knob values as given (None: not given) -> TrainConfig fields."""
    changes = {k: v for k, v in values.items() if v is not None and k != "lr"}
    for field in ("lr_d", "lr_g"):
        if values.get("lr") is not None:
            changes.setdefault(field, values["lr"])
    for field in ("g_hidden", "d_hidden"):
        if field in changes:
            changes[field] = parse_ints(changes[field], f"--{field.replace('_', '-')}")
    if "betas" in changes:
        changes["betas"] = parse_floats(changes["betas"], "--betas", 2)
    return changes


def training_knobs(*, leave_out: tuple[str, ...] = ()) -> Callable:
    """Add the knobs (less `leave_out`) to a command as options; it receives them as `changes`,
    a dict of the TrainConfig fields the user gave."""
    names = [name for name in KNOBS if name not in leave_out]

    def wrap(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "changes"]
        knobs = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=KNOBS[n]) for n in names]

        @functools.wraps(command)
        def with_knobs(**kwargs):
            return command(**{k: v for k, v in kwargs.items() if k not in names},
                           changes=config_changes({n: kwargs[n] for n in names}))

        with_knobs.__signature__ = signature.replace(parameters=own + knobs)
        with_knobs.__annotations__ = {p.name: p.annotation for p in own + knobs}
        return with_knobs

    return wrap

