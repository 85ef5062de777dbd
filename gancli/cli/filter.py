"""`gan filter`: keep the images a discriminator accepts, from any image source."""

from __future__ import annotations

from typing import Annotated

import typer

from gancli.cli._io import binary_output, say, user_errors, write_output
from gancli.cli.options import DataDir, Device, KeepTop, Output, PassBatch, Reject, Runs, Source

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
    from gancli.api import filter as keep_accepted

    dest = binary_output(output)
    kept = keep_accepted(source, ckpt, reject=reject, keep_top=keep_top, runs=runs, batch_size=batch_size, device=device,
                         data_dir=data_dir, notify=say)
    write_output(kept, dest)
