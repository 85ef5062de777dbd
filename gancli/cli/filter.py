"""`gan filter`: keep the images a discriminator accepts, from any image source."""

from __future__ import annotations

from typing import Annotated

import typer

from gancli.cli._io import binary_output, console, say, user_errors
from gancli.cli.options import DataDir, Device, KeepTop, Output, PassBatch, Reject, Runs, Source
from gancli.cli.sample import write_output
from gancli.errors import GancliError

Opt = typer.Option


@user_errors("filter")
def filter_images(
    source: Source = "-",
    ckpt: Annotated[str | None, Opt("--ckpt", help="Checkpoint whose discriminator scores \\[default: the latest run].")] = None,
    reject: Reject = None,
    keep_top: KeepTop = None,
    output: Output = None,
    data_dir: DataDir = None,
    batch_size: PassBatch = 500,
    runs: Runs = None,
    device: Device = "auto",
):
    """Score images with a checkpoint's discriminator and keep the accepted ones.

    Examples:
      gan sample -n 20000 | gan filter --reject 0.6 | gan score
      gan filter generated/ --ckpt runs/x --keep-top 0.8 -o kept/
      gan filter mnist:test --keep-top 0.1 -o least_fake.safetensors
    """
    from gancli.calibration import stored_calibration
    from gancli.data import load_samples
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import score_images, threshold_accept, top_fraction
    from gancli.training import load_models, resolve_device

    if (reject is None) == (keep_top is None):
        raise GancliError("give exactly one of --reject CONFIDENCE or --keep-top FRACTION")
    dest = binary_output(output)
    path = resolve_checkpoint(ckpt, runs)
    config, _, D, meta = load_models(path, device)
    accept = threshold_accept(config, reject, stored_calibration(meta, path, True, say)) if reject is not None else None
    samples = load_samples(source, data_dir)
    samples.score = score_images(config, D, samples.images, batch_size, resolve_device(device))
    keep = accept(samples.score).nonzero().squeeze(1) if accept else top_fraction(samples.score, keep_top)
    kept = samples.select(keep)
    console.print(f"kept {len(kept)} of {len(samples)} ({len(kept) / max(len(samples), 1):.1%})", highlight=False)
    write_output(kept, dest)
