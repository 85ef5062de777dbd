"""`gan score`: FID, precision/recall, density/coverage, KID and class coverage."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

import typer

from gancli.cli._io import console, user_errors
from gancli.cli.options import AsJson, DataDir, Device, PairCount, PassBatch, Reference, Source
from gancli.errors import GancliError

Opt = typer.Option


def _table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gan score ({result['extractor']}, {result['n_generated']} vs {result['n_reference']} images, k={result['k']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("fid", "precision", "recall", "density", "coverage"):
        table.add_row(key, f"{result[key]:.4f}")
    table.add_row("kid", f"{result['kid_mean']:.5f} ± {result['kid_std']:.5f}")
    if "classes_present" in result:
        table.add_row("classes present", f"{result['classes_present']}/10")
        table.add_row("class KL from uniform", f"{result['class_kl']:.4f}")
    Console(file=sys.stdout).print(table)


@user_errors("score")
def score(
    source: Source = "-",
    ref: Reference = "mnist:test",
    features: Annotated[Literal["inception", "mnist"], Opt("--features",
        help="inception (TF-2015 FID pool3) or mnist (the shipped classifier).")] = "inception",
    n: PairCount = 10000,
    k: Annotated[int, Opt("--k", min=1, help="Neighbours for precision/recall and density/coverage.")] = 3,
    as_json: AsJson = False,
    inception_weights: Annotated[str | None, Opt("--inception-weights",
        help="pytorch-fid .pth or TorchScript FID Inception (else GANCLI_INCEPTION_WEIGHTS).")] = None,
    precision: Annotated[Literal["auto", "fp32", "bf16"], Opt("--precision",
        help="Inception numerics: fp32, bf16 autocast, or auto: bf16 on CPUs with native bf16 "
             "(1.9x faster than fp32, FID within 0.3%).")] = "auto",
    no_cache: Annotated[bool, Opt("--no-cache", help="Recompute the reference features.")] = False,
    data_dir: DataDir = None,
    batch_size: PassBatch = None,
    device: Device = "auto",
):
    """Compare generated images with reference images (design note section 6).

    Examples:
      gan sample -n 10000 | gan score --json
      gan score samples.safetensors --features mnist
      gan score mnist --ref mnist:test --inception-weights pt_inception-2015-12-05-6726825d.pth
    """
    from rich.progress import Progress

    from gancli.data import load_images
    from gancli.features import MNIST_BATCH, inception_extractor, mnist_extractor, reference_features
    from gancli.metrics import class_coverage, evaluate
    from gancli.training import resolve_device

    dev = resolve_device(device)
    fake = load_images(source, data_dir)[:n]
    real = load_images(ref, data_dir)[:n]
    if len(fake) < 2 or len(real) < 2:
        raise GancliError(f"{len(fake)} generated and {len(real)} reference images: the metrics need at least 2 of each")
    for name, images in (("generated", fake), ("reference", real)):
        if features == "mnist" and tuple(images.shape[1:]) != (1, 28, 28):
            console.print(f"warning: {name} images are {tuple(images.shape[1:])}; resized to grey 28x28", highlight=False)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("features", total=len(fake) + len(real))
        done = [0]
        advance = lambda count: progress.update(task, completed=done[0] + count)
        if features == "inception":
            extractor = inception_extractor(inception_weights, batch_size or 50, dev, advance, precision)
        else:
            extractor = mnist_extractor(batch_size or MNIST_BATCH, dev, advance)
        fake_features, predicted = extractor.run(fake)
        done[0] = len(fake)
        real_features, _ = reference_features(extractor, real, no_cache=no_cache,
                                              warn=lambda message: console.print(f"warning: {message}", highlight=False))
    result = {"extractor": extractor.name, "weights_hash": extractor.weights_hash,
              "n_generated": len(fake), "n_reference": len(real), "reference": ref}
    result |= evaluate(real_features, fake_features, k)
    if predicted is not None:
        result |= class_coverage(predicted)
    if as_json:
        print(json.dumps(result))
    else:
        _table(result)
