"""`gan filter`: keep the images a discriminator accepts, from any image source."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from gancli.cli._io import binary_output, console, user_errors
from gancli.cli.sample import KeepTop, Output, Reject, write_output
from gancli.errors import GancliError

Opt = typer.Option


@user_errors("filter")
def filter_images(
    source: Annotated[str, typer.Argument(help="- (stdin stream), samples file, image folder or dataset name.")] = "-",
    ckpt: Annotated[Optional[str], Opt("--ckpt", help="Checkpoint whose discriminator scores \\[default: the latest run].")] = None,
    reject: Reject = None,
    keep_top: KeepTop = None,
    output: Output = None,
    data_dir: Annotated[Optional[str], Opt("--data-dir", help="Folder with the IDX files, for dataset sources.")] = None,
    batch_size: Annotated[int, Opt("--batch-size", help="Images per discriminator pass.")] = 500,
    runs: Annotated[Optional[str], Opt("--runs", help="Runs folder for the latest run.")] = None,
    device: Annotated[str, Opt("--device", help="auto, cpu or cuda.")] = "auto",
):
    """Score images with a checkpoint's discriminator and keep the accepted ones.

    Examples:
      gan sample -n 20000 | gan filter --reject 0.6 | gan score
      gan filter generated/ --ckpt runs/x --keep-top 0.8 -o kept/
      gan filter mnist:test --keep-top 0.1 -o least_fake.safetensors
    """
    from gancli.data import load_samples
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import score_images, threshold_accept, top_fraction
    from gancli.training import load_models, resolve_device

    if (reject is None) == (keep_top is None):
        raise GancliError("give exactly one of --reject CONFIDENCE or --keep-top FRACTION")
    dest = binary_output(output)
    config, _, D, _ = load_models(resolve_checkpoint(ckpt, runs), device)
    accept = threshold_accept(config, reject) if reject is not None else None
    samples = load_samples(source, data_dir)
    samples.score = score_images(config, D, samples.images, batch_size, resolve_device(device))
    keep = accept(samples.score).nonzero().squeeze(1) if accept else top_fraction(samples.score, keep_top)
    kept = samples.select(keep)
    console.print(f"kept {len(kept)} of {len(samples)} ({len(kept) / max(len(samples), 1):.1%})", highlight=False)
    write_output(kept, dest)
