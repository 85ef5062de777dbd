"""TrainConfig: the one source of defaults, saved in every checkpoint.

Importing this module must stay cheap (no torch): the CLI validates options with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gancli.errors import GancliError, UsageError

OBJECTIVES = ("vanilla", "fgan", "wgan", "wgan-gp")
# Row names of the table in divergences.py (kept here so `--help` needs no torch import).
DIVERGENCES = (
    "kl", "reverse-kl", "pearson", "neyman", "squared-hellinger",
    "jeffrey", "js", "gan", "total-variation", "alpha",
)
# mlp: the course's; dcgan: two strided convolutions each way; infogan: dcgan with a fully connected layer of
# 16 x conv_width (1024) after G's input and before D's output, the conv net of Lucic et al. 2018 (models.py)
ARCHS = ("mlp", "dcgan", "infogan")
CONV_ARCHS = ("dcgan", "infogan")
# DiffAugment's policies for D's inputs (Zhao et al. 2020; augment.py): no flips or colour, which change a digit
AUGMENTATIONS = ("translation", "cutout")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
G_LOSSES = ("alternative", "minimax")
LR_DECAYS = ("none", "linear", "cosine")
# --precision: auto is resolved when training starts (inference.resolve_precision: bf16 autocast where the
# CPU runs it natively, else fp32), so that a checkpoint's config holds the numerics it trained with
PRECISIONS = ("auto", "fp32", "bf16")
# A dataset -> its classes, for each dataset gancli ships a classifier of (scripts/train_classifier.py,
# weights in gancli/weights/): `--features auto` and the per-epoch evaluation score a dataset's images
# on its own classifier. KMNIST has none: its official files were never at hand, and a classifier
# trained on anything else would not be KMNIST's.
CLASSIFIER_CLASSES: dict[str, tuple[str, ...]] = {
    "mnist": tuple("0123456789"),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
}
# gan score --features and gancli.score's features (api.choose_features). The default is the Inception:
# the published FID protocol is its; auto would give classifier FIDs on MNIST that no paper's table has.
FEATURES = ("inception", *CLASSIFIER_CLASSES, "auto")
DEFAULT_FEATURES = "inception"
REJECT_METHODS = ("threshold", "drs")  # gan sample --reject-method (sampling.make_acceptance)
INTERPOLATION_MODES = ("slerp", "lerp")  # gan interpolate --mode (sampling.interpolation_latents)
EXPORT_FORMATS = ("torchscript", "onnx", "state-dict", "course")  # gan export --format (export.WRITERS)

DEVICES = ("auto", "cpu", "cuda")

# Fields fixed when a run starts: they shape the networks (d_dropout adds modules to the MLP
# discriminator, so its weights would no longer load) or seed its randomness (the RNG states
# come from the checkpoint). On resume a different value is refused, the same one accepted.
LOCKED_FIELDS = ("arch", "d_arch", "z_dim", "g_hidden", "d_hidden", "conv_width", "image_shape", "d_dropout", "spectral_norm", "seed",
                 "conditional")


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "vanilla"
    div: str = "js"
    alpha: float = 0.5
    g_loss: str = "alternative"
    # architecture
    arch: str = "mlp"
    d_arch: str = ""  # D's architecture where it is not G's (one of ARCHS); "" the same as arch
    z_dim: int = 100
    g_hidden: tuple[int, ...] = (256, 512, 1024)
    d_hidden: tuple[int, ...] = (1024, 512, 256)
    conv_width: int = 64
    image_shape: tuple[int, int, int] = (1, 28, 28)
    d_dropout: float = 0.0
    spectral_norm: bool = False  # every layer of D divided by its largest singular value (Miyato et al. 2018)
    # class-conditional: G takes a class embedding, D projects on it (models.py); `classes` are the data's
    # class names, set from its labels when the run starts (api.train), () for an unconditional run
    conditional: bool = False
    classes: tuple[str, ...] = ()
    # data and schedule
    data: str = "mnist"
    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    d_weight_decay: float = 0.0
    clip_grad_norm: float = 0.0
    n_critic: int = 1
    clip_weights: float = 0.0
    gp_lambda: float = 0.0
    ms_lambda: float = 0.0
    ms_step: float = 0.0
    ms_every: int = 10
    r1: float = 0.0  # gamma of the zero-centred penalty gamma/2 E_P ||grad_x D(x)||^2 (Mescheder et al. 2018)
    r1_every: int = 16  # lazy R1 (Karras et al. 2020): every N-th D step, weighted N: the same mean push, 1/N the cost
    lr_warmup: int = 0  # epochs at lr/100 then lr/10 (half each) after a start or a switch of objective
    lr_decay: str = "none"  # after the warm-up, towards lr_floor * lr by the end of the last configured epoch
    lr_floor: float = 0.0
    precision: str = "fp32"
    sync_batch_norm: bool = False  # under torchrun, the DCGAN generator's batch norm over the global batch
    ema: float = 0.0  # decay of the moving average of G's weights that sampling uses; 0 off (training.ema_decay);
    # a new run's default is NEW_RUN_DEFAULTS
    diffaug: str = ""  # DiffAugment of every image D sees, e.g. "translation,cutout" (augment.py); "" off
    top_k: float = 1.0  # top-k training (Sinha et al. 2020): G learns from this fraction of its fakes at the end; 1 off
    top_k_decay: float = 0.99  # ... the fraction kept starts at 1 and is multiplied by this every epoch down to top_k
    # quality during training (evaluation.py): 0 off, as in checkpoints written before it; make_config
    # turns it on for the data of a dataset gancli ships a classifier of (CLASSIFIER_CLASSES)
    eval_every: int = 0  # after every N-th epoch and the last
    eval_n: int = 2000  # generated images, against as many test images of the data's dataset

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config read from a file: anything malformed is a GancliError, never a traceback."""
        if not isinstance(values, dict):
            raise GancliError("the config is not a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        cleaned = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        for name, value in cleaned.items():
            default = known[name].default
            if not _same_kind(value, default):
                raise GancliError(f"config field {name} is {value!r}, expected a value like {default!r}")
        return validate(cls(**cleaned))

    def lr_factor(self, epoch: int, start: int = 0) -> float:
        """Multiplier of both learning rates in a 0-based epoch, for an objective that started at epoch `start`:
        the warm-up's 1/100 then 1/10 (the reference study's), then 1, decaying linearly or along a
        half cosine towards lr_floor, which it would reach at the end of the last configured epoch."""
        k = epoch - start
        if k < self.lr_warmup:
            return 0.01 if k < self.lr_warmup / 2 else 0.1
        decay_start = start + self.lr_warmup
        progress = min(1.0, (epoch - decay_start) / max(1, self.epochs - decay_start))
        if self.lr_decay == "linear":
            return 1 - (1 - self.lr_floor) * progress
        if self.lr_decay == "cosine":
            return self.lr_floor + (1 - self.lr_floor) * (1 + math.cos(math.pi * progress)) / 2
        return 1.0

    @property
    def n_classes(self) -> int:
        """The classes a conditional run's networks embed; 0 for an unconditional run."""
        return len(self.classes) if self.conditional else 0

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The DiffAugment policies in the order they apply (`diffaug` "translation,cutout" -> both)."""
        return tuple(self.diffaug.split(",")) if self.diffaug else ()

    def top_k_at(self, epoch: int, batch: int) -> int:
        """The fakes of a batch of `batch` that G learns from in a 0-based epoch: ceil(batch max(top_k, top_k_decay^epoch))
        (Sinha et al. 2020's anneal, whose gamma 0.99 is the default); all of them while top_k is 1."""
        return math.ceil(batch * max(self.top_k, self.top_k_decay ** epoch) - 1e-9)

    def ms_lambda_at(self, epoch: int) -> float:
        """MSGAN weight for a 0-based epoch: start at ms_lambda, + ms_step every ms_every epochs."""
        return self.ms_lambda + self.ms_step * (epoch // self.ms_every)

    @property
    def discriminator_arch(self) -> str:
        """D's architecture: `d_arch`, else G's `arch`."""
        return self.d_arch or self.arch

    @property
    def label(self) -> str:
        """What is optimised, e.g. `vanilla`, `fgan-kl`, `fgan-alpha2`; with --g-loss minimax, `-minimax` added."""
        name = self.objective
        if self.objective == "fgan":
            name = f"fgan-{self.div}" + (f"{self.alpha:g}" if self.div == "alpha" else "")
        return name + ("-minimax" if self.g_loss == "minimax" and self.objective not in ("wgan", "wgan-gp") else "")

    @property
    def trained_objective(self) -> tuple:
        """The fields that define what is optimised, less those this objective ignores (alpha
        outside the alpha divergence, the divergence outside f-GAN): equal tuples, same objective;
        on resume, a different one starts a child run."""
        return (self.objective, self.div if self.objective == "fgan" else None,
                self.alpha if self.objective == "fgan" and self.div == "alpha" else None,
                None if self.objective in ("wgan", "wgan-gp") else self.g_loss)


def _same_kind(value, default) -> bool:
    if default == ():  # the class names
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if isinstance(default, tuple):
        return isinstance(value, tuple) and len(value) > 0 and all(_same_kind(v, default[0]) for v in value)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return type(value) is type(default)


# The papers' settings: vanilla / f-GAN (Radford et al. 2015), WGAN (Arjovsky et al. 2017),
# WGAN-GP (Gulrajani et al. 2017). f-GAN adds the zero-centred penalty R1 (gamma 10, Mescheder et
# al. 2018): without it the unbounded conjugates (KL, Pearson, Jeffrey) drive the plain D's output
# to infinity within a few epochs on MNIST. Spectral normalisation also kept KL finite, but the
# normalised MLP D learnt far more slowly (README); --r1 0 gives back the course's plain objective.
MAX_WIDTH = 2**24  # the widest layer, and the most pixels in an image, that a config may claim

OBJECTIVE_DEFAULTS: dict[str, dict] = {
    "vanilla": {},
    "fgan": {"r1": 10.0},
    "wgan": {"optimizer": "rmsprop", "lr_g": 5e-5, "lr_d": 5e-5, "n_critic": 5, "clip_weights": 0.01},
    "wgan-gp": {"lr_g": 1e-4, "lr_d": 1e-4, "betas": (0.0, 0.9), "n_critic": 5, "gp_lambda": 10.0},
}


# A new run's defaults where they differ from TrainConfig's, which are what a checkpoint written before
# the field changed default means by its absence: the moving average of G became the default (the
# results issue: it lowered every objective's FID at 12 epochs as at 100); --ema 0 gives back the
# course's plain generator.
NEW_RUN_DEFAULTS: dict[str, object] = {"ema": 0.999}


# `gan calibrate` fits on half of its images and measures on the other half: two of each kind each
MIN_CALIBRATION_IMAGES = 4
DOMAIN_EVAL_EVERY = 1  # a new run on a dataset gancli ships a classifier of is evaluated after every epoch


def classifier_domain(source: str) -> str | None:
    """The dataset a run's --data or a source names ('fashion-mnist:test[:500]' -> 'fashion-mnist')
    when gancli ships its classifier, else None (an image folder, a file, KMNIST)."""
    name = source.split("[")[0].split(":")[0]
    return name if name in CLASSIFIER_CLASSES else None


def no_classifier_note(data: str) -> str:
    """What a run on data without a shipped classifier says about its per-epoch evaluation."""
    return (f"per-epoch evaluation off: gancli ships classifiers for {', '.join(CLASSIFIER_CLASSES)}, "
            f"not for {Path(data).name}")


def make_config(objective: str, **overrides) -> TrainConfig:
    """A new run's config: NEW_RUN_DEFAULTS, the objective's defaults, then every override that is not
    None; the per-epoch evaluation is on (every epoch) for data with a shipped classifier unless told otherwise."""
    if objective not in OBJECTIVES:
        raise GancliError(f"unknown objective {objective!r}", f"choose one of {', '.join(OBJECTIVES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    evaluation = {"eval_every": DOMAIN_EVAL_EVERY} if classifier_domain(overrides.get("data", TrainConfig.data)) else {}
    config = validate(TrainConfig(**{"objective": objective, **NEW_RUN_DEFAULTS, **OBJECTIVE_DEFAULTS[objective],
                                     **evaluation, **overrides}))
    check_objective_options(config, overrides)
    return config


def check_objective_options(config: TrainConfig, given: dict) -> None:
    """Refuse options the objective would silently ignore: --div outside f-GAN, --alpha outside the alpha divergence."""
    _check("div" not in given or config.objective == "fgan", f"--div applies to fgan, not {config.objective}",
           "use `gan train fgan --div ...`")
    _check("alpha" not in given or (config.objective == "fgan" and config.div == "alpha"),
           f"--alpha applies to --div alpha, not {config.label}", "add --div alpha, or drop --alpha")


def _check(condition: bool, message: str, hint: str | None = None) -> None:
    if not condition:
        raise GancliError(message, hint)


def validate(c: TrainConfig) -> TrainConfig:
    _check(c.objective in OBJECTIVES, f"unknown objective {c.objective!r}", f"choose one of {', '.join(OBJECTIVES)}")
    _check(c.div in DIVERGENCES, f"unknown divergence {c.div!r}", f"choose one of {', '.join(DIVERGENCES)}")
    _check(c.div != "alpha" or c.alpha not in (0.0, 1.0), "--alpha must not be 0 or 1", "those are KL and reverse KL")
    _check(c.g_loss in G_LOSSES, f"unknown generator loss {c.g_loss!r}", f"choose one of {', '.join(G_LOSSES)}")
    _check(c.precision in PRECISIONS, f"unknown precision {c.precision!r}", "use auto, fp32 or bf16")
    _check(c.arch in ARCHS, f"unknown architecture {c.arch!r}", f"choose one of {', '.join(ARCHS)}")
    _check(c.d_arch in ("", *ARCHS), f"unknown discriminator architecture {c.d_arch!r}", f"choose one of {', '.join(ARCHS)}")
    _check(c.optimizer in OPTIMIZERS, f"unknown optimizer {c.optimizer!r}", f"choose one of {', '.join(OPTIMIZERS)}")
    _check(c.z_dim > 0 and all(h > 0 for h in c.g_hidden + c.d_hidden) and c.conv_width > 0,
           "network sizes must be positive")
    # a bound far above any MNIST-like net, below what torch can describe (a forged 2^56-wide layer overflows it)
    _check(max(c.z_dim, c.conv_width, *c.g_hidden, *c.d_hidden) <= MAX_WIDTH and math.prod(c.image_shape) <= MAX_WIDTH,
           f"network sizes and image size must be at most {MAX_WIDTH:,}")
    for flag, arch in (("--arch", c.arch), ("--d-arch", c.discriminator_arch)):
        _check(arch not in CONV_ARCHS or (c.image_shape[1] % 4 == 0 and c.image_shape[2] % 4 == 0),
               f"{flag} {arch} needs image sides divisible by 4, got {c.image_shape[1]}x{c.image_shape[2]}", f"use {flag} mlp")
    _check(0.0 <= c.d_dropout < 1.0, "--d-dropout must be in [0, 1)")
    _check(c.epochs > 0 and c.batch_size > 0 and c.n_critic > 0 and c.ms_every > 0 and c.r1_every > 0,
           "--epochs, --batch-size, --n-critic, --ms-every and --r1-every must be positive")
    _check(c.lr_g > 0 and c.lr_d > 0, "learning rates must be positive")
    _check(len(c.betas) == 2 and all(0.0 <= b < 1.0 for b in c.betas), "--betas takes two numbers in [0, 1)", "e.g. 0.5,0.999")
    _check(min(c.d_weight_decay, c.clip_grad_norm, c.clip_weights, c.gp_lambda, c.ms_lambda, c.r1, c.lr_warmup) >= 0,
           "weight decay, clipping, penalties, mode-seeking lambda and warm-up must be >= 0")
    _check(c.lr_decay in LR_DECAYS, f"unknown --lr-decay {c.lr_decay!r}", f"choose one of {', '.join(LR_DECAYS)}")
    _check(0.0 <= c.lr_floor <= 1.0, "--lr-floor is a fraction of the learning rate, in [0, 1]")
    _check(not c.sync_batch_norm or c.arch in CONV_ARCHS, "--sync-batch-norm applies to the conv generators "
           f"({', '.join(CONV_ARCHS)})", "the MLP has no batch norm")
    _check(all(a in AUGMENTATIONS for a in c.augmentations) and len(set(c.augmentations)) == len(c.augmentations),
           f"unknown --diffaug {c.diffaug!r}", f"a comma-separated list of {', '.join(AUGMENTATIONS)}, each once")
    _check(not c.conditional or not c.classes or len(c.classes) >= 2,
           f"a class-conditional run needs at least 2 classes, its data has {len(c.classes)}")
    _check(0.0 < c.top_k <= 1.0 and 0.0 <= c.top_k_decay <= 1.0, "--top-k is a fraction in (0, 1] and "
           "--top-k-decay a factor in [0, 1]", "e.g. --top-k 0.5 --top-k-decay 0.99; --top-k 1 turns it off")
    _check(0.0 <= c.ema < 1.0, "--ema is a decay in [0, 1)", "e.g. 0.999; 0 turns it off")
    _check(c.eval_every >= 0 and c.eval_n >= 2, "--eval-every must be >= 0 and --eval-n >= 2")
    _check(c.eval_every == 0 or classifier_domain(c.data) is not None,
           f"--eval-every scores on the classifier of the data's dataset; gancli ships those of "
           f"{', '.join(CLASSIFIER_CLASSES)}, not one for {c.data}",
           "train with --eval-every 0 and score samples with `gan score --features inception`")
    return dataclasses.replace(c, d_arch="") if c.d_arch == c.arch else c  # one spelling of "D is G's kind"


# A run's image shape and classes are its data's (api.train sets them), so no config file sets them
NOT_IN_FILES = ("image_shape", "classes")


def file_defaults() -> dict:
    """The keys a config file may set, with their defaults: TrainConfig's fields less NOT_IN_FILES,
    and `lr` (both learning rates, as the option)."""
    return {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name not in NOT_IN_FILES} | \
        {"lr": TrainConfig.lr_d}


def config_fields(values: dict, source: str) -> dict:
    """Parsed config-file keys -> TrainConfig fields: `objective` and the fields by name (`lr`: both
    learning rates, as the option), arrays as tuples. An unknown key, a wrong type or a value out of
    range is a UsageError naming the key; a value is checked with the file's other keys (so that
    `sync_batch_norm` stands with `arch = "dcgan"`), and a key is named when the file is valid
    without it."""
    import difflib

    known = file_defaults()
    fields = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise UsageError(f"{source}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                             "keys are gan train's options with _ for -: see `gan config RUN` for a whole file")
        value = tuple(value) if isinstance(value, list) else value
        if not _same_kind(value, known[key]):
            kind = "a table (a range goes under [search] in a gan tune space)" if isinstance(value, dict) else \
                f"a {type(value).__name__}"
            raise UsageError(f"{source}: {key} = {value!r} is {kind}, expected a value like {known[key]!r}")
        fields[key] = value
    if "lr" in fields:
        lr = fields.pop("lr")
        fields = {"lr_d": lr, "lr_g": lr} | fields

    def check(chosen: dict) -> None:
        validate(dataclasses.replace(TrainConfig(), **chosen))

    try:
        check(fields)
    except GancliError as whole:
        # the key without which the rest holds, else the first that fails alone
        culprit = next((k for k in fields if _holds(check, {f: v for f, v in fields.items() if f != k})), None) or \
            next((k for k in fields if not _holds(check, {k: fields[k]})), None)
        if culprit is None:
            raise UsageError(f"{source}: {whole.message}", whole.hint) from None
        try:
            check({culprit: fields[culprit]})
            error = whole
        except GancliError as alone:
            error = alone
        raise UsageError(f"{source}: {culprit} = {fields[culprit]!r}: {error.message}", error.hint) from None
    return fields


def _holds(check: Callable[[dict], None], chosen: dict) -> bool:
    try:
        check(chosen)
    except GancliError:
        return False
    return True


def config_fields_from_toml(text: str, source: str) -> dict:
    """`config_fields` of a TOML text (`gan train --config FILE.toml`)."""
    import tomllib

    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{source} is not TOML: {error}") from None
    return config_fields(values, source)


def other_objective(fields: dict, old: str, new: str) -> tuple[dict, list[str]]:
    """A config file's fields for another objective than its own: those at `old`'s own defaults
    (OBJECTIVE_DEFAULTS, and the divergence outside f-GAN) give way to `new`'s; returns the fields
    kept and the names of those dropped. A value the file changed from `old`'s default stays."""
    specific = set(OBJECTIVE_DEFAULTS.get(old, {})) | set(OBJECTIVE_DEFAULTS.get(new, {})) | \
        ({"div", "alpha"} if new != "fgan" else set())
    defaults = make_config(old) if old in OBJECTIVES else TrainConfig()
    dropped = [k for k in fields if k in specific and (k in ("div", "alpha") and new != "fgan" or
                                                        fields[k] == getattr(defaults, k))]
    return {k: v for k, v in fields.items() if k not in dropped}, dropped


def read_config_file(path: str | Path) -> dict:
    """`config_fields_from_toml` of a file (a path, or a pipe such as bash's `<(gan config RUN)`)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the config file {path}: {getattr(error, 'strerror', None) or error}") from None
    return config_fields_from_toml(text, str(path))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string (raw past the BMP)
    return repr(value)  # ints, and floats with a point or an exponent (inf and nan are TOML too)


def config_toml(config: TrainConfig) -> str:
    """`config` as a file `gan train --config` reads back into the same config: every field (so that
    later defaults do not change a rerun), less the data's image shape and the divergence fields an
    objective other than theirs would refuse."""
    skipped = set(NOT_IN_FILES) | ({"div", "alpha"} if config.objective != "fgan" else
                                   set() if config.div == "alpha" else {"alpha"})
    return "".join(f"{f.name} = {_toml_value(getattr(config, f.name))}\n"
                   for f in dataclasses.fields(config) if f.name not in skipped)
