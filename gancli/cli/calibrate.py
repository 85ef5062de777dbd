"""`gan calibrate`: fit a map of the discriminator's score to P(real) and store it in a new checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gancli.cli._io import console, user_errors
from gancli.cli.options import AsJson, Best, Checkpoint, DataDir, Device, LatentSeed, PairCount, PassBatch, RawGenerator, Reference, Runs
from gancli.errors import GancliError


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@user_errors("calibrate")
def calibrate(
    checkpoint: Checkpoint = None,
    ref: Reference = "mnist:test",
    n: PairCount = 10000,
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
    from gancli import checkpoint as ckpt
    from gancli.calibration import calibrate as fit
    from gancli.data import load_images
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import generate, score_images
    from gancli.training import has_moving_average, load_models, resolve_device

    path = resolve_checkpoint(checkpoint, runs, best)
    out = output or path.with_name(f"{path.stem}-calibrated.safetensors")
    if out.resolve() == path.resolve():
        raise GancliError(f"-o {out} is the checkpoint itself: calibration writes a new one", "pick another -o")
    tensors, meta = ckpt.read_file(path, "gan")
    config, G, D, _ = load_models(path, device, (tensors, meta), raw_generator=raw_generator)
    dev = resolve_device(device)
    real = load_images(ref, data_dir)[:n]
    fake = generate(config, G, D, len(real), seed=seed, batch_size=batch_size, device=dev)
    result = fit(config, score_images(config, D, real, batch_size, dev), fake.score)
    averaged = not raw_generator and has_moving_average(tensors)
    result |= {"reference": ref, "seed": seed, "generator": "moving average" if averaged else "raw", "source": str(path)}
    ckpt.atomic_write(out, ckpt.encode(tensors, {**meta, "calibration": result}))
    console.print(f"wrote {out}: ECE {_number(result['ece_before'])} -> {_number(result['ece_after'])}, "
                  f"Brier {_number(result['brier_before'])} -> {_number(result['brier_after'])} "
                  f"on {result['n'] - result['fitted_on']} + {result['n'] - result['fitted_on']} held-out images", highlight=False)
    if as_json:
        print(json.dumps(result))
    else:
        print(f"a {result['a']:.6g}\nb {result['b']:.6g}", file=sys.stdout)
