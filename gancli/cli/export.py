"""`gan export`: a checkpoint's generator for code without gancli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from gancli.cli._io import say, user_errors
from gancli.cli.options import Best, Checkpoint, RawGenerator, Runs
from gancli.config import EXPORT_FORMATS

Opt = typer.Option


@user_errors("export")
def export(
    checkpoint: Checkpoint = None,
    output: Annotated[Path | None, Opt("-o", "--output", help="FILE.pt (TorchScript), .onnx, .safetensors or .pth (the "
                                                             "state dict), or the course's .pth with --format course "
                                                             "\\[default: the format's generator.pt, generator.onnx, "
                                                             "generator.safetensors or G.pth].")] = None,
    format: Annotated[Literal[EXPORT_FORMATS] | None, Opt("--format", help="torchscript, onnx (the `export` extra), "
                      "state-dict or course \\[default: from the file name].")] = None,
    best: Best = False, raw_generator: RawGenerator = False, runs: Runs = None,
):
    """Write the generator (its moving average where the run kept one) as a file other code loads without
    gancli: z [N, z_dim] (and a conditional model's labels [N]) -> images in [-1, 1] [N, C, H, W].

    Examples:
      gan export runs/x -o generator.pt        # torch.jit.load(...)(torch.randn(16, 100))
      gan export runs/x -o generator.onnx      # onnxruntime, dynamic batch
      gan export runs/x -o G.safetensors       # the state dict alone (.pth too)
      gan export runs/x --format course -o checkpoints/G.pth   # for the course
    """
    from gancli.api import export as write

    path, written = write(checkpoint, output, format=format, best=best, raw_generator=raw_generator, runs=runs)
    say(f"wrote the generator to {path} ({written})")
