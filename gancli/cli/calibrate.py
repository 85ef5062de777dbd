"""`gan calibrate`: fit a map of the discriminator's score to P(real) and store it in a new checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gancli.cli._io import say, user_errors
from gancli.cli.options import AsJson, Best, Checkpoint, DataDir, Device, LatentSeed, PassBatch, RawGenerator, Reference, Runs
from gancli.config import MIN_CALIBRATION_IMAGES


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@user_errors("calibrate")
def calibrate(
    checkpoint: Checkpoint = None,
    ref: Reference = "mnist:test",
    n: Annotated[int, typer.Option("-n", min=MIN_CALIBRATION_IMAGES,
        help="Use the first N reference images and as many fresh samples; half fit the map, half measure it.")] = 10000,
    seed: LatentSeed = 0,
    output: Annotated[Path | None, typer.Option("-o", "--output",
        help="The calibrated checkpoint \\[default: CHECKPOINT-calibrated.safetensors beside it].")] = None,
    as_json: AsJson = False,
    best: Best = False, raw_generator: RawGenerator = False,
    data_dir: DataDir = None, batch_size: PassBatch = 500, runs: Runs = None, device: Device = "auto",
):
    """Calibrate the discriminator for rejection (Platt scaling, as MH-GAN, Turner et al. 2019).

    Fits P(real | x) = sigmoid(a s(x) + b), s the objective's log-ratio estimate (a WGAN
    critic's raw output), on the first half of N held-out real images (--ref, never trained on)
    against N fresh samples; reports calibration error (ECE, Brier) before and after on the other
    half. Writes a new checkpoint holding the map; the original stays untouched. `gan sample
    --reject` / `--reject-method drs` and `gan filter --reject` on it use the calibrated ratio,
    which also lets WGAN critics reject by threshold.

    Examples:
      gan calibrate runs/x                         # -> runs/x/checkpoint-calibrated.safetensors
      gan sample runs/x/checkpoint-calibrated.safetensors --reject 0.6 | gan score
      gan calibrate runs/wgan-gp --json -o wgan-cal.safetensors
    """
    from gancli.api import calibrate as fit

    out, result = fit(checkpoint, ref, n=n, seed=seed, output=output, best=best, raw_generator=raw_generator, runs=runs,
                      batch_size=batch_size, device=device, data_dir=data_dir)
    held_out = result["n"] - result["fitted_on"]
    say(f"wrote {out}: ECE {_number(result['ece_before'])} -> {_number(result['ece_after'])}, "
        f"Brier {_number(result['brier_before'])} -> {_number(result['brier_after'])} on {held_out} + {held_out} held-out images")
    if as_json:
        print(json.dumps(result, allow_nan=False))
    else:
        print(f"a {result['a']:.6g}\nb {result['b']:.6g}", file=sys.stdout)
