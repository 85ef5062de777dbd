"""gancli as a library: the functions the `gan` commands are thin callers of.

    import gancli
    run = gancli.train("vanilla", epochs=1, data_dir="mnist/")
    samples = gancli.sample(run, n=1000, reject=0.6)
    print(gancli.score(samples, reference="mnist:test", n=1000))

Each returns plain data (a run folder, `Samples`, a dict), prints nothing, and raises
`GancliError` (the CLI's one-line message) for what a user got wrong. What the CLI prints on
stderr reaches a `notify` callback; progress reaches `on_progress` / `Callbacks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from gancli.config import CLASSIFIER_CLASSES, DEFAULT_FEATURES, FEATURES, TrainConfig
from gancli.errors import GancliError
from gancli.streams import Samples

Notify = Callable[[str], None]
ImageSource = str | Path | torch.Tensor | Samples


def quiet(message: str) -> None:
    """The default `notify`: a library call says nothing."""


def samples_of(source: ImageSource, data_dir: str | None = None) -> Samples:
    """Samples from a source `gan score` accepts (path, folder, dataset name, `-`), or from a tensor or
    Samples given as they are."""
    from gancli.data import load_samples

    if isinstance(source, Samples):
        return source
    if isinstance(source, torch.Tensor):
        if source.dtype != torch.uint8 or source.ndim != 4:
            raise GancliError(f"images must be a uint8 tensor [N, C, H, W], got {source.dtype} {tuple(source.shape)}",
                              "convert with gancli.models.to_uint8")
        return Samples(source)
    return load_samples(str(source), data_dir)


def images_of(source: ImageSource, data_dir: str | None = None) -> torch.Tensor:
    """uint8 [N, C, H, W] of a source (samples_of)."""
    return samples_of(source, data_dir).images


def labelled_of(source: ImageSource, data_dir: str | None = None) -> Samples:
    """A source's images with their classes (data.load_labelled), or Samples given with labels; a conditional
    discriminator scores an image for its class."""
    from gancli.data import load_labelled

    if isinstance(source, Samples) and source.labels is not None:
        return source
    if isinstance(source, (str, Path)):
        return load_labelled(str(source), data_dir)
    raise GancliError(f"{describe(source)} has no class labels", "pass a dataset name, a class folder or labelled samples")


def describe(source: ImageSource) -> str:
    if isinstance(source, Samples):
        return str(source.meta.get("source", "samples"))
    if isinstance(source, torch.Tensor):
        return f"tensor {list(source.shape)}"
    return str(source)


def dataset_of(source: ImageSource) -> str | None:
    """The dataset a source names (`mnist:test[:2000]` -> mnist), None for files, folders and tensors."""
    from gancli.data import parse_dataset_name, split_slice

    found = parse_dataset_name(split_slice(source)[0]) if isinstance(source, str) else None
    return found[0] if found else None


def choose_features(features: str, reference: ImageSource) -> str:
    """`auto`: the classifier of the reference's dataset where gancli ships one (config.CLASSIFIER_CLASSES:
    MNIST, Fashion-MNIST), else the Inception (KMNIST, folders, files, tensors)."""
    if features not in FEATURES:
        raise GancliError(f"unknown features {features!r}", f"choose one of {', '.join(FEATURES)}")
    if features != "auto":
        return features
    domain = dataset_of(reference)
    return domain if domain in CLASSIFIER_CLASSES else "inception"


def score(generated: ImageSource, reference: ImageSource = "mnist:test", *, features: str = DEFAULT_FEATURES, n: int = 10000,
          k: int = 3, inception_weights: str | None = None, precision: str = "auto", batch_size: int | None = None,
          device: str = "auto", data_dir: str | None = None, no_cache: bool = False, notify: Notify = quiet,
          on_progress: Callable[[int, int], None] | None = None) -> dict:
    """FID, precision, recall, density, coverage and KID of the first `n` generated images against
    the first `n` reference images (design note section 6), and with a classifier, class coverage
    (classes present and missing by name, class KL, histogram); the protocol (extractor, weights
    hash, counts, reference, k) in the same dict.

    `features`: inception (TF-2015 FID pool3, the default, as `gan score`'s: the published FID
    protocol is the Inception's), mnist or fashion-mnist (the shipped classifier of that dataset)
    or auto (the classifier of the reference's dataset, the Inception otherwise, KMNIST's included).
    A classifier scoring another dataset's images is
    allowed and says so in `notify` and in the result's `warning`. `n` >= 2 and `k` >= 1, as the CLI checks.
    """
    from numbers import Integral

    from gancli.features import CLASSIFIER_BATCH, classifier_extractor, inception_extractor, reference_features
    from gancli.inference import resolve_device
    from gancli.metrics import class_coverage, evaluate

    if not (isinstance(n, Integral) and n >= 2):  # a negative n would slice from the end
        raise GancliError(f"n must be a whole number of at least 2, got {n!r}", "the metrics need 2 images of each set")
    if not (isinstance(k, Integral) and k >= 1):
        raise GancliError(f"k must be a whole number of at least 1, got {k!r}", "the published protocol's is 3")
    if batch_size is not None and not (isinstance(batch_size, Integral) and batch_size >= 1):
        raise GancliError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    chosen = choose_features(features, reference)
    drawn = samples_of(generated, data_dir)
    drawn = drawn.select(torch.arange(min(n, len(drawn))))
    fake = drawn.images
    real = images_of(reference, data_dir)[:n]
    if len(fake) < 2 or len(real) < 2:
        raise GancliError(f"{len(fake)} generated and {len(real)} reference images: the metrics need at least 2 of each")
    domain = dataset_of(reference)
    mismatch = (f"the {chosen} classifier's features on {domain} images: another domain's view of them"
                if chosen != "inception" and domain not in (None, chosen) else None)
    if mismatch:
        notify(f"warning: {mismatch}")
    for name, images in (("generated", fake), ("reference", real)):
        # The Inception's protocol maps grey to RGB and knows no other layout (RGBA's alpha has no place
        # in it); the classifier sees grey whatever it gets: any channel count, averaged, with a warning
        if chosen == "inception" and images.shape[1] not in (1, 3):
            raise GancliError(f"the {name} images have {images.shape[1]} channels; the Inception takes grey (1) or RGB (3)",
                              "convert them to grey or RGB")
        if chosen != "inception" and tuple(images.shape[1:]) != (1, 28, 28):
            notify(f"warning: {name} images are {tuple(images.shape[1:])}; resized to grey 28x28")
    dev = resolve_device(device)
    done = [0]
    advance = (lambda count: on_progress(done[0] + count, len(fake) + len(real))) if on_progress else None
    if chosen == "inception":
        extractor = inception_extractor(inception_weights, batch_size or 50, dev, advance, precision, notify=notify)
    else:
        extractor = classifier_extractor(chosen, batch_size or CLASSIFIER_BATCH, dev, advance)
    fake_features, predicted = extractor.run(fake)
    done[0] = len(fake)
    real_features, _ = reference_features(extractor, real, no_cache=no_cache, warn=lambda m: notify(f"warning: {m}"))
    result = {"extractor": extractor.name, "weights_hash": extractor.weights_hash, "n_generated": len(fake),
              "n_reference": len(real), "reference": describe(reference), **evaluate(real_features, fake_features, k)}
    if mismatch:
        result["warning"] = mismatch
    result |= class_coverage(predicted, extractor.classes) if predicted is not None else {}
    if drawn.labels is not None:
        own = (extractor, fake_features, predicted) if predicted is not None else None
        result |= _asked_classes(drawn, reference, n, own, batch_size, dev, data_dir, notify)
    return result


# the images of each class, generated and reference, below which its intra-class FID is not reported:
# a Frechet distance of a handful of 128-d features measures their scatter, not the class
MIN_CLASS_IMAGES = 50


def _asked_classes(drawn: Samples, reference: ImageSource, n: int, own: tuple | None, batch_size: int | None, device,
                   data_dir: str | None, notify: Notify) -> dict:
    """What labelled samples (drawn for a class each) add to a score, on the classifier gancli ships for
    their dataset (the data of the run they came from, else the reference's dataset, else the dataset whose
    class names they carry where those are not mere numbers): `class_accuracy`, the share it assigns to the
    class asked; `asked_histogram`, the samples per class asked; and where the reference is labelled with
    those classes (a dataset, a class folder), `intra_fid`: each class's FID against that class's images
    among the first `n` of the reference (None where either has fewer than MIN_CLASS_IMAGES), and their
    mean `intra_fid_mean`. `own`: the score's own classifier run (extractor, features, predictions)."""
    from gancli.config import classifier_domain
    from gancli.features import CLASSIFIER_BATCH, classifier_extractor, reference_features
    from gancli.metrics import class_accuracy, frechet_distance, statistics
    from gancli.sampling import relabelled

    names = list(drawn.meta.get("classes") or ())
    result = {"asked_histogram": torch.bincount(drawn.labels, minlength=len(names)).tolist()}
    named = [d for d, classes in CLASSIFIER_CLASSES.items() if not all(c.isdigit() for c in classes)]
    candidates = [classifier_domain(str(drawn.meta.get("data", ""))), dataset_of(reference), *named]
    domain = next((d for d in candidates if d in CLASSIFIER_CLASSES and
                   relabelled(drawn.labels, names, CLASSIFIER_CLASSES[d]) is not None), None)
    if domain is None:
        notify(f"note: no classifier gancli ships knows the samples' classes ({', '.join(names) or 'unnamed'}) "
               "as theirs: no class accuracy")
        return result
    classes = CLASSIFIER_CLASSES[domain]
    asked = relabelled(drawn.labels, names, classes)
    extractor, features, predicted = own if own and own[0].name == f"{domain}-classifier" else (None, None, None)
    if extractor is None:
        extractor = classifier_extractor(domain, batch_size or CLASSIFIER_BATCH, device)
        features, predicted = extractor.run(drawn.images)
    result |= {"class_accuracy": class_accuracy(predicted, asked), "intra_fid_extractor": extractor.name}
    try:
        real = labelled_of(reference, data_dir)
    except GancliError:
        notify(f"note: {describe(reference)} has no labels: no intra-class FID")
        return result
    real = real.select(torch.arange(min(n, len(real))))
    real_labels = relabelled(real.labels, real.meta.get("classes") or (), classes)
    if real_labels is None:
        notify(f"note: {describe(reference)}'s classes are not the samples': no intra-class FID")
        return result
    real_features, _ = reference_features(extractor, real.images, warn=lambda m: notify(f"warning: {m}"))
    intra = {}
    for c, name in enumerate(classes):
        mine, theirs = features[(asked == c).numpy()], real_features[(real_labels == c).numpy()]
        enough = min(len(mine), len(theirs)) >= MIN_CLASS_IMAGES
        # max: the distance of two near-identical sets can round to a hair below 0
        intra[name] = max(0.0, frechet_distance(*statistics(mine), *statistics(theirs))) if enough else None
    if None in intra.values():
        notify(f"note: intra-class FID only for classes with at least {MIN_CLASS_IMAGES} generated and reference images")
    scored = [v for v in intra.values() if v is not None]
    return result | {"intra_fid": intra} | ({"intra_fid_mean": sum(scored) / len(scored)} if scored else {})


def sample(checkpoint: str | Path | None = None, n: int = 10000, seed: int = 0, *, reject: float | None = None,
           reject_method: str = "threshold", drs_percentile: float = 80.0, keep_top: float | None = None,
           max_draws: int | None = None, mix: bool = False, truncation: float | None = None, best: bool = False,
           raw_generator: bool = False, runs: str | None = None, batch_size: int = 500, device: str = "auto",
           classes: tuple[int | str, ...] | None = None, per_class: int | None = None,
           notify: Notify = quiet, on_progress: Callable[[int, int], None] | None = None) -> Samples:
    """`n` images from a checkpoint or run folder (default: the latest run), with their latents,
    discriminator scores and (`meta["drawn"]`) the number of draws they took; `reject` keeps draws
    whose confidence reaches it (`reject_method` drs: Azadi et al. 2019), `keep_top` the
    best-scored fraction. A calibration stored by `gan calibrate` is used for rejection.
    A conditional model draws `classes` (indices or names; default all) in turn, as many of each
    (`per_class` each: n is then per_class times their number), and the samples carry their `labels`.
    `on_progress(kept, drawn)` after every batch."""
    from gancli.inference import open_checkpoint
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import generate, make_acceptance

    if reject is not None and keep_top is not None:
        raise GancliError("--reject and --keep-top exclude each other", "choose one")
    opened = open_checkpoint(resolve_checkpoint(checkpoint, runs, best), device, raw_generator=raw_generator)
    config, G, D, dev = opened.config, opened.G, opened.D, opened.device
    asked = class_indices(config, classes, per_class)
    if per_class is not None:
        n = per_class * (len(asked) if asked is not None else config.n_classes)
    used = reject is not None or reject_method == "drs"
    accept = make_acceptance(config, G, D, reject, method=reject_method, drs_percentile=drs_percentile, seed=seed,
                             batch_size=batch_size, device=dev, calibration=_calibration(opened, used, notify, opened.generator_name),
                             classes=asked)
    samples = generate(config, G, D, n, seed=seed, batch_size=batch_size, device=dev, accept=accept, max_draws=max_draws,
                       mix=mix, truncation=truncation, keep_top=keep_top, classes=asked, on_progress=on_progress)
    if accept or keep_top is not None:
        drawn = samples.meta["drawn"]
        notify(f"accepted {len(samples)} of {drawn} draws ({len(samples) / drawn:.1%})")
    samples.meta |= {"source": str(opened.path), "data": config.data, "seed": seed, "reject": reject, "reject_method": reject_method,
                     "keep_top": keep_top, "mix": mix, "truncation": truncation, "objective": config.label}
    return samples


def class_indices(config: TrainConfig, classes: tuple[int | str, ...] | None, per_class: int | None = None) -> tuple[int, ...] | None:
    """Classes asked of a model, by name (`Sandal`, or MNIST's `7`) or by index, as indices; None for all of
    them. Where every name is a number (MNIST's digits, numbered class folders) a class is named, never
    indexed, so `3` is the class called 3 whatever its place. An unconditional model refuses any."""
    from gancli.sampling import check_classes, unconditional

    if not config.conditional and (classes is not None or per_class is not None):
        raise unconditional(config)
    if classes is None:
        return None
    names = {name: i for i, name in enumerate(config.classes)}
    by_name_only = all(name.isdigit() for name in config.classes)
    indices = []
    for token in (str(c).strip() for c in classes):
        index = names.get(token, None if by_name_only or not token.isdigit() else int(token))
        if index is None:
            listed = config.classes if by_name_only else (f"{i} {name}" for i, name in enumerate(config.classes))
            raise GancliError(f"no class {token!r} in this model", f"its classes: {', '.join(listed)}")
        indices.append(index)
    if len(set(indices)) < len(indices):
        raise GancliError(f"classes {', '.join(map(str, classes))} name a class twice", "name each once")
    check_classes(config, tuple(indices))
    return tuple(indices)


def _calibration(opened, used: bool, notify: Notify, generator: str | None = None) -> tuple[float, float] | None:
    """The checkpoint's stored calibration map, said to `notify` when rejection uses it (warned about when
    it was fitted on another `generator` than the one that draws)."""
    from gancli.calibration import stored_calibration

    return stored_calibration(opened.calibration, opened.path, used, notify, generator)


def interpolate(checkpoint: str | Path | None = None, seeds: tuple[int, ...] = tuple(range(8)), steps: int = 10, *,
                mode: str = "slerp", reject: float | None = None, best: bool = False, raw_generator: bool = False,
                runs: str | None = None, device: str = "auto", klass: int | str | None = None,
                between_classes: tuple[int | str, int | str] | None = None, notify: Notify = quiet) -> Samples:
    """One row of `steps` images per seed, from one pair of latent endpoints to the other (slerp,
    White 2016, or lerp), row-major; with `reject`, both endpoints are draws the discriminator accepts.
    A conditional model keeps each row's class fixed (`klass`, default row i's class i in turn), or, with
    `between_classes` (a, b), keeps each row's one latent and moves its class embedding from a to b."""
    from gancli.inference import open_checkpoint
    from gancli.models import to_uint8
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import forward_rows, interpolation_latents, score_images, threshold_accept

    if not seeds:
        raise GancliError("interpolation needs at least one seed (one row)")
    opened = open_checkpoint(resolve_checkpoint(checkpoint, runs, best), device, raw_generator=raw_generator)
    config, G, D, dev = opened.config, opened.G, opened.D, opened.device
    if klass is not None and between_classes is not None:
        raise GancliError("--class and --between-classes exclude each other", "give one")
    if between_classes is not None and reject is not None:
        raise GancliError("--reject judges an endpoint for one class; --between-classes has two", "drop --reject")
    fixed = class_indices(config, (klass,) if klass is not None else None)
    pair = class_indices(config, between_classes)
    if pair is not None and len(pair) != 2:
        raise GancliError(f"--between-classes takes two classes, got {len(pair)}", "e.g. 3,8")
    accept = None if reject is None else threshold_accept(config, reject, _calibration(opened, True, notify, opened.generator_name))

    def row_class(row: int) -> torch.Tensor | None:
        return torch.tensor([fixed[0] if fixed else row % config.n_classes]) if config.conditional else None

    def endpoints(row: int, seed: int) -> torch.Tensor:
        rng = torch.Generator().manual_seed(seed)
        if accept is None:
            return torch.randn(2, config.z_dim, generator=rng)
        z = torch.randn(256, config.z_dim, generator=rng)
        y = None if row_class(row) is None else row_class(row).expand(256)
        keep = accept(score_images(config, D, to_uint8(forward_rows(G, z, 256, dev, y)), 256, dev, y))
        if keep.sum() < 2:
            raise GancliError(f"fewer than 2 of 256 candidates reach confidence {reject} for seed {seed}", "lower --reject")
        return z[keep][:2]

    meta = {"source": str(opened.path), "data": config.data, "mode": mode, "seeds": list(seeds), "steps": steps}
    if pair is not None:  # one latent a row, its class weights from one-hot a to one-hot b
        z = torch.stack([torch.randn(config.z_dim, generator=torch.Generator().manual_seed(seed)) for seed in seeds])
        z = z.repeat_interleave(steps, dim=0)
        t = torch.linspace(0, 1, steps).repeat(len(seeds)).unsqueeze(1)
        one_hot = torch.eye(config.n_classes)
        weights = (1 - t) * one_hot[pair[0]] + t * one_hot[pair[1]]
        return Samples(to_uint8(forward_rows(G, z, 500, dev, weights)), z, None,  # the class weights move linearly
                       meta | {"mode": "lerp", "between_classes": [config.classes[c] for c in pair]})
    ends = torch.stack([endpoints(row, seed) for row, seed in enumerate(seeds)])
    z = interpolation_latents(ends[:, 0], ends[:, 1], steps, mode)
    labels = None if not config.conditional else torch.cat([row_class(row).expand(steps) for row in range(len(seeds))])
    return Samples(to_uint8(forward_rows(G, z, 500, dev, labels)), z, None,
                   meta | ({"classes": list(config.classes)} if labels is not None else {}), labels)


def filter(source: ImageSource, checkpoint: str | Path | None = None, *, reject: float | None = None,
           keep_top: float | None = None, best: bool = False, runs: str | None = None, batch_size: int = 500,
           device: str = "auto", data_dir: str | None = None, notify: Notify = quiet) -> Samples:
    """The images of `source` that a checkpoint's discriminator accepts: confidence r/(1+r) >= `reject`
    (through its stored calibration, if any), or the `keep_top` best-scored fraction; exactly one of the
    two. Each kept image carries its raw discriminator score."""
    from gancli.data import load_samples
    from gancli.inference import open_checkpoint
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import model_labels, score_images, threshold_accept, top_fraction, within_classes

    if (reject is None) == (keep_top is None):
        raise GancliError("give exactly one of --reject CONFIDENCE or --keep-top FRACTION")
    opened = open_checkpoint(resolve_checkpoint(checkpoint, runs, best), device)
    accept = threshold_accept(opened.config, reject, _calibration(opened, True, notify)) if reject is not None else None
    if isinstance(source, Samples):
        samples = source
    elif isinstance(source, torch.Tensor):
        samples = Samples(images_of(source))
    else:
        samples = load_samples(str(source), data_dir)
    labels = model_labels(opened.config, samples)
    samples = replace(samples, score=score_images(opened.config, opened.D, samples.images, batch_size, opened.device, labels))
    if accept:
        keep = accept(samples.score).nonzero().squeeze(1)
    elif labels is not None:  # a conditional model's best of each class: the class mix stays
        keep = within_classes(labels, lambda members, c: members[top_fraction(samples.score[members], keep_top)])
    else:
        keep = top_fraction(samples.score, keep_top)
    kept = samples.select(keep)
    notify(f"kept {len(kept)} of {len(samples)} ({len(kept) / max(len(samples), 1):.1%})")
    return kept


def calibrate(checkpoint: str | Path | None = None, reference: ImageSource = "mnist:test", *, n: int = 10000, seed: int = 0,
              output: str | Path | None = None, best: bool = False, raw_generator: bool = False, runs: str | None = None,
              batch_size: int = 500, device: str = "auto", data_dir: str | None = None) -> tuple[Path, dict]:
    """Fit the discriminator's Platt map (calibration.py) on the first `n` `reference` images, held out
    from training, against as many fresh samples, and write a copy of the checkpoint that holds it
    (`output`, default CHECKPOINT-calibrated.safetensors beside it; never the checkpoint itself).
    Returns that path and the stored calibration."""
    from gancli.calibration import calibrate as fit
    from gancli.calibration import check_held_out
    from gancli.checkpoint import write_checkpoint
    from gancli.config import MIN_CALIBRATION_IMAGES
    from gancli.inference import open_checkpoint
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import generate, model_labels, score_images

    path = resolve_checkpoint(checkpoint, runs, best)
    out = Path(output) if output else path.with_name(f"{path.stem}-calibrated.safetensors")
    if out.resolve() == path.resolve():
        raise GancliError(f"-o {out} is the checkpoint itself: calibration writes a new one", "pick another -o")
    opened = open_checkpoint(path, device, raw_generator=raw_generator)
    config, dev = opened.config, opened.device
    if isinstance(reference, (str, Path)):
        check_held_out(config.data, str(reference))
    if n < MIN_CALIBRATION_IMAGES:
        raise GancliError(f"-n {n}: calibration needs at least {MIN_CALIBRATION_IMAGES} images of each kind")
    real = labelled_of(reference, data_dir) if config.conditional else Samples(images_of(reference, data_dir))
    real = real.select(torch.arange(min(n, len(real))))
    if len(real) < MIN_CALIBRATION_IMAGES:
        raise GancliError(f"--ref {describe(reference)} holds {len(real)} images; calibration needs at least "
                          f"{MIN_CALIBRATION_IMAGES}", "pass a larger held-out reference, e.g. mnist:test")
    fake = generate(config, opened.G, opened.D, len(real), seed=seed, batch_size=batch_size, device=dev)
    result = fit(config, score_images(config, opened.D, real.images, batch_size, dev, model_labels(config, real)), fake.score)
    result |= {"reference": describe(reference), "seed": seed, "generator": opened.generator_name, "source": str(path)}
    write_checkpoint(out, replace(opened.record, calibration=result))
    return out, result


@dataclass(frozen=True)
class Callbacks:
    """What a caller sees of a training, each optional: `notify` the one-line notes the CLI prints;
    `on_start(state, run, batches_per_epoch)` before the first step; `on_step(state, scalars)` and
    `on_epoch(state, record)` as `training.train` calls them."""

    notify: Notify = quiet
    on_start: Callable | None = None
    on_step: Callable | None = None
    on_epoch: Callable | None = None


def train(objective: str | TrainConfig = "vanilla", *, epochs: int | None = None, data_dir: str | None = None,
          runs: str | None = None, name: str | None = None, device: str = "auto", callbacks: Callbacks = Callbacks(),
          **options) -> Path:
    """Train a new run and return its folder. `objective` is vanilla, fgan, wgan or wgan-gp with
    `options` named as TrainConfig's fields (div="kl", ema=0.999, lr_d=1e-4, ...), or a whole
    TrainConfig (options then override its fields). Ctrl-C raises TrainingInterrupted after saving
    a resumable checkpoint. Under torchrun, every process calls it and they train the run together
    (`distributed.joined`); each returns the run's folder."""
    from gancli.config import make_config, validate
    from gancli.distributed import joined
    from gancli.runs import check_run_name, discarded_unless_saved, new_run_dir, runs_root
    from gancli.state import new_state

    check_run_name(name)  # bad options fail before the data loads
    if isinstance(objective, TrainConfig):
        config = validate(replace(objective, **options, **({"epochs": epochs} if epochs is not None else {})))
    else:
        config = make_config(objective, epochs=epochs, **options)
    data = _training_data(config, data_dir)
    config = validate(replace(config, image_shape=tuple(data.images.shape[1:]),
                              classes=tuple(data.meta["classes"]) if config.conditional else ()))
    with joined(device) as (world, device):
        state = new_state(config, device, world)
        run = world.on_main(lambda: new_run_dir(runs_root(runs), name, config.label))
        with discarded_unless_saved(run, new=world.main):
            _run_training(state, data, run, data_dir, callbacks)
    return run


def _training_data(config: TrainConfig, data_dir: str | None) -> Samples:
    """The run's data: its images, with their labels for a conditional run (data.load_labelled), whose
    classes must be those the run started with."""
    from gancli.data import load_labelled, load_samples

    if not config.conditional:
        return load_samples(config.data, data_dir)
    data = load_labelled(config.data, data_dir)
    if config.classes and tuple(data.meta["classes"]) != config.classes:
        raise GancliError(f"{config.data}'s classes ({', '.join(data.meta['classes'])}) are not the run's "
                          f"({', '.join(config.classes)})", "resume on data of the same classes")
    return data


def resume(checkpoint: str | Path | None = None, *, epochs: int | None = None, until_epoch: int | None = None,
           reset_optimizer: bool = False, data_dir: str | None = None, runs: str | None = None, name: str | None = None,
           device: str = "auto", callbacks: Callbacks = Callbacks(), **options) -> Path:
    """Continue a run bit-exactly (default: the latest) and return the folder it trained: the run
    itself, or a new child run when the objective changes (div=..., alpha=..., g_loss=...) or the
    checkpoint is not a run's latest. The rules are `resuming.plan_resume`'s (`gan resume --help`)."""
    from gancli.distributed import joined
    from gancli.resuming import resume_run
    from gancli.runs import check_run_name, discarded_unless_saved, resolve_checkpoint

    check_run_name(name)
    with joined(device) as (world, device):
        resumed = resume_run(resolve_checkpoint(checkpoint, runs), options, epochs=epochs, until_epoch=until_epoch,
                             runs=runs, name=name, device=device, reset_optimizer=reset_optimizer, world=world)
        with discarded_unless_saved(resumed.run, new=resumed.child and world.main):
            data = _training_data(resumed.state.config, data_dir)
            _run_training(resumed.state, data, resumed.run, data_dir, callbacks, resumed.notes)
    return resumed.run


def _evaluator(config: TrainConfig, data_dir: str | None, device, new_run: bool, notify: Notify):
    """The per-epoch evaluation against the test split of the run's dataset, or None when it is off
    (a new run on data without a shipped classifier says why)."""
    from gancli.config import classifier_domain, no_classifier_note
    from gancli.data import load_images
    from gancli.evaluation import make_evaluator

    domain = classifier_domain(config.data)
    if not config.eval_every:
        if new_run and domain is None:
            notify(no_classifier_note(config.data))
        return None
    try:
        reference = load_images(f"{domain}:test", data_dir)
    except GancliError as e:
        raise GancliError(f"the per-epoch evaluation needs {domain}'s test split: {e.message}",
                          "put t10k-images-idx3-ubyte(.gz) beside the training files, or pass --eval-every 0") from None
    return make_evaluator(config, reference, device, warn=lambda message: notify(f"warning: {message}"))


def _run_training(state, data: Samples, run: Path, data_dir: str | None, callbacks: Callbacks,
                  notes: list[str] = ()) -> None:
    """Check, then train. `notes` (what resume decided) reach `notify` only once the data and the
    evaluation are known to work, so that a refused resume ends in its one error. Under torchrun,
    rank 0 alone evaluates and reports."""
    from gancli.inference import precision_warning
    from gancli.runs import CHECKPOINT
    from gancli.training import check_data
    from gancli.training import train as train_loop

    world = state.world
    callbacks = callbacks if world.main else Callbacks()
    images, labels = data.images, data.labels if state.config.conditional else None
    batches = check_data(state.config, images, labels)
    evaluate = _evaluator(state.config, data_dir, state.device, state.step == 0, callbacks.notify) if world.main else None
    for note in notes:
        callbacks.notify(note)
    if warning := precision_warning(state.config.precision, state.device):
        callbacks.notify(f"warning: {warning}")
    ranks = f", {world.size} processes of {state.config.batch_size // world.size} images a step" if world.size > 1 else ""
    conditional = f" conditional on {state.config.n_classes} classes" if state.config.conditional else ""
    nets = f"{state.config.arch} G, {state.config.d_arch} D" if state.config.d_arch else state.config.arch
    callbacks.notify(f"run {run} ({state.config.label}, {nets}{conditional}, {images.shape[0]} images, "
                     f"epochs {state.epoch + 1}..{state.config.epochs}, device {state.device}{ranks})")
    if callbacks.on_start:
        callbacks.on_start(state, run, batches)
    train_loop(state, images, run, on_step=callbacks.on_step, on_epoch=callbacks.on_epoch, evaluate=evaluate, labels=labels)
    callbacks.notify(f"done: {run / CHECKPOINT}")


def export(checkpoint: str | Path | None = None, output: str | Path | None = None, *, format: str | None = None,
           best: bool = False, raw_generator: bool = False, runs: str | None = None) -> tuple[Path, str]:
    """Write a checkpoint's generator (default: the latest run's; its moving average where it kept one)
    for code without gancli: TorchScript (.pt), ONNX (.onnx, the `export` extra), its state dict (.pth,
    .safetensors) or the course's G.pth (`format="course"`); the format from `output`'s suffix, or
    `output` from the format's default name (generator.pt without either). Returns the path and format."""
    from gancli.export import export as write
    from gancli.export import export_target
    from gancli.inference import open_checkpoint
    from gancli.runs import resolve_checkpoint

    output, chosen = export_target(None if output is None else Path(output), format)  # fails before any reading
    opened = open_checkpoint(resolve_checkpoint(checkpoint, runs, best), "cpu", raw_generator=raw_generator)
    write(opened, output, chosen)
    return output, chosen
