"""Generation, discriminator rejection and latent interpolation; pure functions over models.

Reproducibility: latents are drawn in fixed chunks of Z_CHUNK from a generator seeded by
`seed`, whatever the batch size, and the network runs on whole chunks, so that the first n
images are the same whatever -n; every network pass pads its rows to a multiple of
ROW_BLOCK, because CPU GEMM kernels pick their summation order by row count, and an odd
last batch would otherwise round a few pixels differently. Another batch size is another
row count: with several threads a wide net's rare pixel can round one grey level apart
(the course MLP: 2 pixels of 1,000 images between --batch-size 64 and 500).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gancli.calibration import log_ratio_fn
from gancli.config import INTERPOLATION_MODES, REJECT_METHODS, TrainConfig
from gancli.errors import GancliError
from gancli.models import to_uint8, to_unit_range
from gancli.streams import Samples, class_folder

Z_CHUNK = 1024
ROW_BLOCK = 64
DRS_EPSILON = 1e-6


def _padded(chunk: torch.Tensor) -> torch.Tensor:
    pad = -len(chunk) % ROW_BLOCK
    return torch.cat([chunk, chunk.new_zeros(pad, *chunk.shape[1:])]) if pad else chunk


@torch.no_grad()
def forward_rows(net: torch.nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
    """net(x) (net(x, labels) for a conditional network) in batches, each padded to a multiple of ROW_BLOCK
    rows: the same rows, the same bits."""
    outputs = []
    label_chunks = labels.split(batch_size) if labels is not None else [None] * len(x.split(batch_size))
    for chunk, y in zip(x.split(batch_size), label_chunks, strict=True):
        out = net(_padded(chunk).to(device), None if y is None else _padded(y).to(device))
        outputs.append(out[: len(chunk)].float().cpu())
    return torch.cat(outputs)


def class_labels(config: TrainConfig, n: int, classes: tuple[int, ...] | None = None, start: int = 0) -> torch.Tensor | None:
    """The classes of draws start, ..., start + n - 1 of a conditional model: `classes` (default: all of the
    run's) in turn, so that every n draws hold each as often as n allows; None for an unconditional model."""
    if not config.conditional:
        return None
    order = torch.tensor(classes if classes is not None else range(config.n_classes), dtype=torch.int64)
    return order[torch.arange(start, start + n) % len(order)]


def relabelled(labels: torch.Tensor, names, classes) -> torch.Tensor | None:
    """`labels`, indices into `names`, as indices into `classes`, each name matched by itself or as its class
    folder (streams.class_folder: a path separator made a dash); None where a name is none of `classes`."""
    index = {class_folder(name): i for i, name in enumerate(classes)} | {name: i for i, name in enumerate(classes)}
    if any(name not in index for name in names):
        return None
    return torch.tensor([index[name] for name in names], dtype=torch.int64)[labels] if len(names) else labels


def model_labels(config: TrainConfig, samples: Samples) -> torch.Tensor | None:
    """The labels a conditional discriminator scores `samples` for, as the model's class indices: labels
    named by the samples' own classes (a class folder's, another run's) are matched to the model's by
    name; None for an unconditional model. Images without labels, or of a class the model does not
    have, are a GancliError."""
    if not config.conditional:
        return None
    if samples.labels is None:
        raise GancliError("a class-conditional discriminator scores an image for a class: these images have no labels",
                          "pass samples that carry labels (gan sample keeps them in the stream), or a class folder")
    names = samples.meta.get("classes")
    if names is not None:
        labels = relabelled(samples.labels, names, config.classes)
        if labels is None:
            known = {*config.classes, *map(class_folder, config.classes)}
            unknown = next(name for name in names if name not in known)
            raise GancliError(f"the images' classes include {unknown!r}, which the model does not have",
                              f"its classes: {', '.join(config.classes)}")
        return labels
    if len(samples.labels) and int(samples.labels.max()) >= config.n_classes:
        raise GancliError(f"a label ({int(samples.labels.max())}) is past the model's {config.n_classes} classes")
    return samples.labels


def unconditional(config: TrainConfig) -> GancliError:
    """The error of a class asked of an unconditional model."""
    return GancliError(f"this checkpoint's model is unconditional ({config.label}): it cannot be asked for a class",
                       "train one with `gan train ... --conditional`")


def check_classes(config: TrainConfig, classes: tuple[int, ...] | None) -> None:
    """Refuse classes asked of an unconditional model, or past a conditional one's."""
    if classes is None:
        return
    if not config.conditional:
        raise unconditional(config)
    if not classes or any(not 0 <= c < config.n_classes for c in classes):
        raise GancliError(f"classes {list(classes)} are not the model's 0..{config.n_classes - 1}",
                          f"its classes: {', '.join(f'{i} {name}' for i, name in enumerate(config.classes))}")


def truncated_normal(shape: tuple[int, ...], psi: float, rng: torch.Generator) -> torch.Tensor:
    """N(0, 1) components restricted to [-psi, psi] (the truncation trick: precision up, recall down), in one
    pass by the inverse CDF, z = ndtri(Phi(-psi) + U (Phi(psi) - Phi(-psi))), U ~ U(0, 1), in float64:
    exact, and as fast for psi = 1e-5 as for 2 (a rejection loop would spin for small psi)."""
    if not (math.isfinite(psi) and psi > 0):
        raise GancliError(f"--truncation takes a finite bound above 0, got {psi}", "e.g. 1.0; leave it out for no truncation")
    low, high = torch.special.ndtr(torch.tensor([-psi, psi], dtype=torch.float64))
    z = torch.special.ndtri(low + torch.rand(shape, generator=rng, dtype=torch.float64) * (high - low))
    return z.clamp(-psi, psi).float()  # rounding may step past psi by an ulp, U = 0 past any bound (ndtri(0) = -inf)


def latents(seed: int, z_dim: int, mix: bool = False, truncation: float | None = None):
    """Endless chunks of z. `truncation`: components within [-psi, psi]; `mix`: z = a z1 + (1 - a) z2,
    a ~ U(0, 1) per sample: also trades recall for precision."""
    rng = torch.Generator().manual_seed(seed)

    def draw() -> torch.Tensor:
        if truncation is None:
            return torch.randn(Z_CHUNK, z_dim, generator=rng)
        return truncated_normal((Z_CHUNK, z_dim), truncation, rng)

    while True:
        z = draw()
        if mix:
            other = draw()
            a = torch.rand(Z_CHUNK, 1, generator=rng)
            z = a * z + (1 - a) * other
        yield z


def score_images(config: TrainConfig, D, images: torch.Tensor, batch_size: int, device,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
    """Raw discriminator output v of uint8 images (fakes are scored after rounding, as `filter` sees them);
    a conditional discriminator's, v(x, y), for each image's class in `labels`."""
    if tuple(images.shape[1:]) != tuple(config.image_shape):
        raise GancliError(f"images are {tuple(images.shape[1:])}, the discriminator expects {tuple(config.image_shape)}")
    if config.conditional and labels is None:
        raise GancliError("a class-conditional discriminator scores an image for a class: these images have no labels",
                          "pass samples that carry labels (gan sample keeps them in the stream), or a class folder")
    return forward_rows(D, to_unit_range(images), batch_size, device, labels if config.conditional else None)


def threshold_accept(config: TrainConfig, threshold: float,
                     calibration: tuple[float, float] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Keep x when the confidence r/(1+r) >= threshold (design note section 7); r from the calibration if given."""
    if not 0.0 < threshold < 1.0:
        raise GancliError(f"--reject takes a confidence in (0, 1), got {threshold}")
    log_ratio = log_ratio_fn(config, calibration)
    log_ratio(torch.zeros(1))  # fail now for critics that estimate no ratio (and have no calibration)
    return lambda v: torch.sigmoid(log_ratio(v)) >= threshold


class DiscriminatorRejection:
    """DRS (Azadi et al. 2019): accept x with probability sigmoid(F(x)),

    F(x) = logit(x) - M - log(1 - exp(logit(x) - M - eps)) - gamma,
    where logit(x) = log r(x), M is the running maximum of logit (burn-in estimate, then
    updated), and gamma shifts F so that its `percentile`-th percentile on the burn-in is 0.
    """

    def __init__(self, config: TrainConfig, burn_in: torch.Tensor, percentile: float, seed: int,
                 calibration: tuple[float, float] | None = None):
        self.log_ratio = log_ratio_fn(config, calibration)
        self.max_logit = self.log_ratio(burn_in).max().item()
        self.gamma = 0.0
        self.gamma = torch.quantile(self._f(burn_in), percentile / 100).item()
        self.rng = torch.Generator().manual_seed(seed)

    def _f(self, v: torch.Tensor) -> torch.Tensor:
        logit = self.log_ratio(v).double()
        shifted = logit - self.max_logit
        return shifted - torch.log(-torch.expm1(shifted - DRS_EPSILON)) - self.gamma

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.max_logit = max(self.max_logit, self.log_ratio(v).max().item())
        return torch.rand(len(v), generator=self.rng, dtype=torch.float64) < torch.sigmoid(self._f(v))


def make_acceptance(config: TrainConfig, G, D, reject: float | None, *, method: str = "threshold",
                    drs_percentile: float = 80.0, seed: int = 0, batch_size: int = 500, device="cpu",
                    calibration: tuple[float, float] | None = None, classes: tuple[int, ...] | None = None):
    """The accept(v) function for `--reject` / `--reject-method`, or None. DRS burns in on the
    discriminator scores of 10,240 fresh samples from a latent seed of its own (a conditional model's of
    the `classes` asked). With a calibration (calibration.calibrate), both use its log-ratio estimate."""
    if method not in REJECT_METHODS:
        raise GancliError(f"unknown --reject-method {method!r}", f"use {' or '.join(REJECT_METHODS)}")
    if not 0 <= drs_percentile <= 100:  # NaN too
        raise GancliError(f"--drs-percentile takes a percentile in [0, 100], got {drs_percentile}", "e.g. 80")
    if method == "drs":
        burn_in = generate(config, G, D, 10 * 1024, seed=seed + 104729, batch_size=batch_size, device=device,
                           classes=classes).score
        return DiscriminatorRejection(config, burn_in, drs_percentile, seed + 1, calibration)
    return threshold_accept(config, reject, calibration) if reject is not None else None


def generate(config: TrainConfig, G, D, n: int, *, seed: int = 0, batch_size: int = 500, device="cpu",
             accept=None, max_draws: int | None = None, mix: bool = False, truncation: float | None = None,
             keep_top: float | None = None, classes: tuple[int, ...] | None = None,
             on_progress: Callable[[int, int], None] | None = None) -> Samples:
    """n samples: images uint8, z, discriminator score v; with `accept` (v -> bool mask) only accepted ones,
    with `keep_top` the best-scored fraction of n / keep_top draws.

    A conditional model's draws are for `classes` in turn (class_labels; default all), and the samples carry
    their `labels`: each class keeps the share of n it was asked for, so that rejection and keep_top, which
    judge v(x, y) for the class drawn, select within a class and never change the class mix."""
    check_classes(config, classes)
    if n < 1:
        raise GancliError("-n must be at least 1")
    if batch_size < 1 or (max_draws is not None and max_draws < 1):
        raise GancliError("--batch-size and --max-draws must be at least 1")
    if keep_top is not None and not 0.0 < keep_top <= 1.0:
        raise GancliError(f"--keep-top takes a fraction in (0, 1], got {keep_top}")
    target = math.ceil(n / keep_top) if keep_top is not None else n
    max_draws = max_draws if max_draws is not None else 100 * target
    kept_images, kept_z, kept_v, kept_y = [], [], [], []
    kept = drawn = offered = 0
    wanted = None if not config.conditional else torch.bincount(class_labels(config, target, classes),
                                                                 minlength=config.n_classes)
    device = torch.device(device)
    for z in latents(seed, config.z_dim, mix, truncation):
        y = class_labels(config, len(z), classes, offered)
        offered += len(z)
        images = to_uint8(forward_rows(G, z, batch_size, device, y))
        v = score_images(config, D, images, batch_size, device, y)
        mask = accept(v) if accept else torch.ones(len(v), dtype=torch.bool)
        if wanted is not None:  # each class up to what is still wanted of it
            mask &= torch.cumsum(torch.nn.functional.one_hot(y, config.n_classes) * mask[:, None], 0)[torch.arange(len(y)), y] \
                <= wanted[y]
            wanted -= torch.bincount(y[mask], minlength=config.n_classes)
        take = mask.nonzero().squeeze(1)[: target - kept]
        kept_images.append(images[take]), kept_z.append(z[take]), kept_v.append(v[take])
        if y is not None:
            kept_y.append(y[take])
        # the draws looked at: a batch that completes the target counts up to its last one taken
        drawn += len(z) if kept + len(take) < target else int(take[-1]) + 1
        kept += len(take)
        if on_progress:
            on_progress(kept, drawn)
        if kept >= target:
            break
        if drawn >= max_draws:
            raise GancliError(f"only {kept} of {target} samples accepted in {drawn} draws ({kept / drawn:.2%})",
                              "lower the threshold, raise --max-draws, or use --keep-top")
    samples = Samples(torch.cat(kept_images), torch.cat(kept_z), torch.cat(kept_v), {"drawn": drawn},
                      torch.cat(kept_y) if kept_y else None)
    if config.conditional:
        samples.meta["classes"] = list(config.classes)
    if keep_top is not None:
        samples = samples.select(top_per_class(samples, keep_top, n, class_labels(config, n, classes)))
    return samples


def within_classes(labels: torch.Tensor, pick: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
    """pick(members, c) for the indices of each class c's members, merged back in their original order: a
    selection by score that keeps within each class, so that it cannot change the class mix."""
    picked = [pick(members, int(c)) for c in labels.unique() if len(members := (labels == c).nonzero().squeeze(1))]
    return torch.sort(torch.cat(picked)).values


def top_per_class(samples: Samples, fraction: float, n: int, asked: torch.Tensor | None) -> torch.Tensor:
    """Indices of the n best-scored samples (top_fraction), or, where they carry the classes they were drawn
    for, of the best-scored of each class as many as `asked` (n labels) holds of it; in their original order."""
    if asked is None:
        return top_fraction(samples.score, fraction, n)
    return within_classes(samples.labels, lambda members, c: members[
        top_fraction(samples.score[members], fraction, int((asked == c).sum()))])


def top_fraction(score: torch.Tensor, fraction: float, count: int | None = None) -> torch.Tensor:
    """Indices of the `count` (default: fraction of all) highest scores, in their original order."""
    if not 0.0 < fraction <= 1.0:
        raise GancliError(f"--keep-top takes a fraction in (0, 1], got {fraction}")
    count = count if count is not None else max(1, round(fraction * len(score)))
    return torch.sort(torch.topk(score, count, sorted=False).indices).values


def slerp(z1: torch.Tensor, z2: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (White 2016), per row; lerp where z1, z2 are (anti)parallel."""
    cos = torch.nn.functional.cosine_similarity(z1, z2, dim=-1).clamp(-1, 1).unsqueeze(-1)
    omega = torch.arccos(cos)
    sin = torch.sin(omega)
    lerp = (1 - t) * z1 + t * z2
    safe = sin.abs() > 1e-6
    sin = torch.where(safe, sin, torch.ones_like(sin))
    spherical = torch.sin((1 - t) * omega) / sin * z1 + torch.sin(t * omega) / sin * z2
    return torch.where(safe, spherical, lerp)


def interpolation_latents(z1: torch.Tensor, z2: torch.Tensor, steps: int, mode: str) -> torch.Tensor:
    """[pairs * steps, z_dim], row-major by pair, endpoints included."""
    if steps < 2:
        raise GancliError("--steps must be at least 2 (the endpoints)")
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    a, b = z1.unsqueeze(1), z2.unsqueeze(1)
    if mode == "slerp":
        path = slerp(a.expand(-1, steps, -1), b.expand(-1, steps, -1), t.expand(len(z1), steps, 1))
    elif mode == "lerp":
        path = (1 - t) * a + t * b
    else:
        raise GancliError(f"unknown --mode {mode!r}", f"use {' or '.join(INTERPOLATION_MODES)}")
    return path.reshape(-1, z1.shape[1])
