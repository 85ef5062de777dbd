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
from gancli.config import (
    ARCHS,
    AUGMENTATIONS,
    CLASSIFIER_CLASSES,
    DEVICES,
    DIVERGENCES,
    DOMAIN_EVAL_EVERY,
    G_LOSSES,
    LR_DECAYS,
    NEW_RUN_DEFAULTS,
    OBJECTIVE_DEFAULTS,
    OBJECTIVES,
    OPTIMIZERS,
    PRECISIONS,
    TrainConfig,
)

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
PassBatch = Annotated[int | None, Opt("--batch-size", min=1, help="Images per network pass: memory, and on a CPU with "
                                      "several threads a rare pixel of a wide net one grey level apart.")]
LatentSeed = Annotated[int, Opt("--seed", help="Latent seed: the same seed and --batch-size give the same images, "
                                "whatever -n.")]
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
Objective = Annotated[Literal[OBJECTIVES] | None, typer.Argument(
    help="vanilla, fgan, wgan or wgan-gp \\[default: the --config file's objective].", show_default=False)]
ConfigFile = Annotated[str | None, Opt("--config", metavar="FILE.toml",
    help="Options from a TOML file, keyed by their names with _ for - (objective = \"fgan\", div = \"kl\", "
         "lr_d = 1e-4, betas = [0.5, 0.999], ...), as `gan config RUN` prints a run's; options on the command "
         "line override it.")]
Name = Annotated[str | None, Opt("--name", help="Name of the new run \\[default: objective and time].")]
Epochs = Annotated[int | None, Opt("--epochs", min=1, help="Epochs to train in this command (on resume: more, on top of those done).")]
UntilEpoch = Annotated[int | None, Opt("--until-epoch", min=1, help="Train until the run has completed this many epochs in all.")]

ARCH_PANEL, OBJECTIVE_PANEL, SCHEDULE_PANEL, EVAL_PANEL = ("Architecture (fixed when a run starts)", "Objective",
                                                           "Data and optimisation", "Evaluation during training")
PARALLEL_PANEL = "Several processes (torchrun --nproc-per-node N -m gancli train ...)"


def _shown(value) -> str:
    if isinstance(value, bool) or value == "":
        return "on" if value is True else "off"
    if isinstance(value, tuple):
        return ",".join(map(_shown, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def default_text(name: str) -> str:
    """A knob's `[default: ...]`, from TrainConfig and the objectives' defaults (never typed by hand):
    the plain default, then each objective that has another, e.g. `[default: 0; fgan 10]`."""
    if name == "d_arch":
        return "\\[default: --arch's]"
    if name == "eval_every":
        return (f"\\[default: {DOMAIN_EVAL_EVERY} on {' and '.join(CLASSIFIER_CLASSES)} data, "
                f"else {_shown(TrainConfig.eval_every)}]")
    field = "lr_d" if name == "lr" else name
    base = NEW_RUN_DEFAULTS.get(field, getattr(TrainConfig, field))
    others = [f"{objective} {_shown(OBJECTIVE_DEFAULTS[objective][field])}" for objective in OBJECTIVES
              if OBJECTIVE_DEFAULTS[objective].get(field, base) != base]
    return f"\\[default: {_shown(base)}{'; ' + ', '.join(others) if others else ''}]"


def _knob(name: str, kind, text: str, panel: str = SCHEDULE_PANEL, **bounds):
    flag = "--" + name.replace("_", "-")
    return name, Annotated[kind | None, Opt(f"{flag}/--no-{flag[2:]}" if kind is bool else flag,
                                            help=f"{text} {default_text(name)}.", rich_help_panel=panel, **bounds)]


# The training knobs: parameter name -> option. Names are TrainConfig fields, except `lr` (both rates).
KNOBS: dict[str, Any] = dict([
    _knob("data", str, "Dataset name (mnist, mnist:test, fashion-mnist, kmnist), image folder or samples file; "
          "SOURCE[:N] takes its first N images, e.g. mnist[:5000]."),
    _knob("batch_size", int, "Images per training step.", min=1),
    _knob("seed", int, "Seed of the run's randomness (fixed when the run starts)."),
    _knob("precision", Literal[PRECISIONS], "auto (bf16 where the CPU runs it natively, else fp32; the checkpoint "
          "records which), fp32, or bf16 autocast (other numerics: faster on CPUs with native bf16, far slower "
          "where it is emulated)."),
    _knob("sync_batch_norm", bool, "Under torchrun on GPUs: a conv generator's batch norm over the global batch, not "
          "each process's part.", PARALLEL_PANEL),
    _knob("arch", Literal[ARCHS], "mlp (100-256-512-1024-784), dcgan (two strided convolutions each way) or infogan "
          "(dcgan with a fully connected layer of 16 x --conv-width in G and D: Lucic et al. 2018's conv net).", ARCH_PANEL),
    _knob("d_arch", Literal[ARCHS], "The discriminator's architecture where it is not the generator's, e.g. --arch mlp "
          "--d-arch infogan: the course's MLP generator against Lucic et al.'s conv discriminator.", ARCH_PANEL),
    _knob("z_dim", int, "Latent size.", ARCH_PANEL, min=1),
    _knob("g_hidden", str, "MLP generator widths.", ARCH_PANEL),
    _knob("d_hidden", str, "MLP discriminator widths.", ARCH_PANEL),
    _knob("conv_width", int, "Base channels of the conv nets (dcgan, infogan).", ARCH_PANEL, min=1),
    _knob("d_dropout", float, "Dropout in the discriminator, e.g. 0.3.", ARCH_PANEL, callback=must(lambda v: 0 <= v < 1, "in [0, 1)")),
    _knob("spectral_norm", bool, "Spectral normalisation of every D layer (Miyato et al. 2018).", ARCH_PANEL),
    _knob("conditional", bool, "Class-conditional: G takes a learned embedding of a class, D projects on it (Miyato and "
          "Koyama 2018); the labels come from the dataset's label files or a folder's class subfolders, and "
          "`gan sample --class 7` draws a class.", ARCH_PANEL),
    _knob("div", Literal[DIVERGENCES], "f-divergence of fgan (on resume: switch to it, a child run).", OBJECTIVE_PANEL),
    _knob("alpha", float, "Order of --div alpha (not 0 or 1).", OBJECTIVE_PANEL),
    _knob("g_loss", Literal[G_LOSSES], "alternative (-E\\[g_f(v)]) or minimax.", OBJECTIVE_PANEL),
    _knob("optimizer", Literal[OPTIMIZERS], "adam, rmsprop or sgd."),
    _knob("lr", float, "Learning rate of both networks.", callback=POSITIVE),
    _knob("lr_d", float, "Discriminator learning rate (overrides --lr).", callback=POSITIVE),
    _knob("lr_g", float, "Generator learning rate (overrides --lr).", callback=POSITIVE),
    _knob("betas", str, "Adam betas, e.g. 0.5,0.999."),
    _knob("d_weight_decay", float, "Discriminator weight decay.", min=0),
    _knob("clip_grad_norm", float, "Rescale gradients to norm C when their norm is >= C; 0 off.", min=0),
    _knob("n_critic", int, "Discriminator steps per generator step.", min=1),
    _knob("clip_weights", float, "WGAN weight clipping c; 0 off.", min=0),
    _knob("gp_lambda", float, "WGAN-GP gradient penalty weight; 0 off.", min=0),
    _knob("ms_lambda", float, "Mode-seeking (MSGAN) weight; 0 turns it off.", min=0),
    _knob("ms_step", float, "Add this to the mode-seeking weight every --ms-every epochs."),
    _knob("ms_every", int, "Epochs between mode-seeking weight steps.", min=1),
    _knob("r1", float, "Zero-centred gradient penalty gamma/2 E||grad D(real)||^2 (R1, Mescheder et al. 2018); 0 off.", min=0),
    _knob("r1_every", int, "Lazy R1: apply it every N-th D step, weighted N (Karras et al. 2020).", min=1),
    _knob("lr_warmup", int, "Epochs of warm-up after a start or a switch: lr/100, then lr/10, half each; 0 off.", min=0),
    _knob("lr_decay", Literal[LR_DECAYS], "After the warm-up, decay lr to --lr-floor by the last epoch."),
    _knob("lr_floor", float, "The decayed lr's end, a fraction of --lr.", callback=must(lambda v: 0 <= v <= 1, "in [0, 1]")),
    _knob("ema", float, "Keep a moving average of G's weights with this decay, e.g. 0.999 (warm-up: min(BETA, "
          "(1+t)/(10+t)) after t steps); sample, interpolate, grids and evaluation use it; 0 off (the course's plain "
          "generator).",
          callback=must(lambda v: 0 <= v < 1, "in [0, 1)")),
    _knob("diffaug", str, f"DiffAugment (Zhao et al. 2020) of every image D sees, real and fake: a comma-separated list "
          f"of {', '.join(AUGMENTATIONS)} (shifts of up to 1/8 of a side; a square of half a side blanked), e.g. "
          "translation,cutout; \"\" off."),
    _knob("top_k", float, "Top-k training (Sinha et al. 2020): G learns from the fraction of its fakes D scores "
          "highest, annealed from 1 by --top-k-decay per epoch down to this; 1 off.",
          callback=must(lambda v: 0 < v <= 1, "in (0, 1]")),
    _knob("top_k_decay", float, "Factor per epoch of the top-k anneal.", callback=must(lambda v: 0 <= v <= 1, "in [0, 1]")),
    _knob("eval_every", int, "Score --eval-n fixed samples after every N-th epoch and the last: FID, precision, "
          "recall, class coverage on the features of the data's own classifier (MNIST's, Fashion-MNIST's) vs its "
          "test split, in log.jsonl; keeps best.safetensors; 0 off (KMNIST and image folders have no classifier).",
          EVAL_PANEL, min=0),
    _knob("eval_n", int, "Images per evaluation, against as many test images of the data's dataset.", EVAL_PANEL, min=2),
])


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

