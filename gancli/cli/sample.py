"""`gan sample` and `gan interpolate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from gancli.cli._io import binary_output, console, parse_ints, user_errors
from gancli.cli.options import POSITIVE, Best, Checkpoint, Device, KeepTop, LatentSeed, Output, PassBatch, RawGenerator, Reject, Runs
from gancli.errors import GancliError

Opt = typer.Option


def stored_calibration(meta: dict, path: Path, used: bool) -> tuple[float, float] | None:
    """The checkpoint's calibration (gan calibrate), said on stderr when rejection uses it."""
    from gancli.calibration import calibration_map

    found = calibration_map(meta)
    if found is not None and used:
        info = meta["calibration"]
        console.print(f"rejection uses the calibration stored in {path} (ECE {info.get('ece_after', float('nan')):.3f} "
                      "on held-out images)", highlight=False)
    return found


def write_output(samples, dest: str) -> None:
    from gancli.streams import write_samples

    write_samples(samples, dest)
    if dest != "-":
        console.print(f"wrote {len(samples)} images to {dest}", highlight=False)


@user_errors("sample")
def sample(
    checkpoint: Checkpoint = None,
    n: Annotated[int, Opt("-n", min=1, help="Number of images.")] = 10000,
    seed: LatentSeed = 0,
    batch_size: PassBatch = 500,
    output: Output = None,
    grid: Annotated[Path | None, Opt("--grid", help="Also save the first 64 images as a PNG grid.")] = None,
    reject: Reject = None,
    reject_method: Annotated[Literal["threshold", "drs"], Opt("--reject-method",
        help="threshold (confidence >= --reject) or drs (Azadi et al. 2019).")] = "threshold",
    drs_percentile: Annotated[float, Opt("--drs-percentile", min=0, max=100,
        help="DRS gamma: this percentile of F on the burn-in maps to acceptance 1/2.")] = 80.0,
    keep_top: KeepTop = None,
    max_draws: Annotated[int | None, Opt("--max-draws", min=1, help="Give up after this many draws \\[default: 100 n].")] = None,
    mix: Annotated[bool, Opt("--mix", help="z = a z1 + (1-a) z2, a ~ U(0,1): precision up, recall down.")] = False,
    truncation: Annotated[float | None, Opt("--truncation", callback=POSITIVE,
        help="Resample latent components beyond PSI: precision up, recall down.")] = None,
    best: Best = False, raw_generator: RawGenerator = False, runs: Runs = None, device: Device = "auto",
):
    """Generate images as a samples stream (stdout when piped), a .safetensors file or PNGs.

    Examples:
      gan sample -n 10000 | gan score
      gan sample -n 10000 --reject 0.6 --mix -o samples.safetensors
      gan sample runs/x -n 64 --reject-method drs -o pngs/ --grid grid.png
      gan sample -n 1000 --keep-top 0.5 > top.safetensors
      gan sample runs/x --best -n 10000 | gan score     # the run's best evaluated epoch
    """
    from rich.progress import Progress

    from gancli.runs import resolve_checkpoint
    from gancli.sampling import generate, make_acceptance
    from gancli.training import load_models, resolve_device

    if reject is not None and keep_top is not None:
        raise GancliError("--reject and --keep-top exclude each other", "choose one")
    if grid is not None and not grid.parent.is_dir():
        raise GancliError(f"--grid {grid}: no folder {grid.parent}", "create it first")
    dest = binary_output(output)
    path = resolve_checkpoint(checkpoint, runs, best)
    dev = resolve_device(device)
    config, G, D, meta = load_models(path, device, raw_generator=raw_generator)
    accept = make_acceptance(config, G, D, reject, reject_method, drs_percentile, seed, batch_size, dev,
                             calibration=stored_calibration(meta, path, used=reject is not None or reject_method == "drs"))
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("sampling", total=n)
        samples = generate(config, G, D, n, seed, batch_size, dev, accept, max_draws, mix, truncation, keep_top,
                           on_progress=lambda kept, drawn: progress.update(task, completed=min(kept, n)))
    drawn = samples.meta.pop("drawn")
    if accept or keep_top:
        console.print(f"accepted {len(samples)} of {drawn} draws ({len(samples) / drawn:.1%})", highlight=False)
    samples.meta |= {"source": str(path), "seed": seed, "reject": reject, "reject_method": reject_method,
                     "keep_top": keep_top, "mix": mix, "truncation": truncation, "objective": config.label}
    if grid:
        from gancli.streams import save_png_grid

        save_png_grid(samples.images[:64], grid, nrow=8)
    write_output(samples, dest)


@user_errors("interpolate")
def interpolate(
    checkpoint: Checkpoint = None,
    pairs: Annotated[int, Opt("--pairs", min=1, help="Rows: pairs of endpoints.")] = 8,
    steps: Annotated[int, Opt("--steps", min=2, help="Images per row, endpoints included.")] = 10,
    mode: Annotated[Literal["slerp", "lerp"], Opt("--mode", help="slerp (White 2016) or lerp.")] = "slerp",
    seeds: Annotated[str | None, Opt("--seeds", help="One seed per pair, e.g. 3,7,11 \\[default: --seed, --seed+1, ...].")] = None,
    seed: LatentSeed = 0,
    reject: Reject = None,
    output: Annotated[str | None, Opt("-o", "--output",
        help="grid.png, anim.gif, frames.safetensors, - or a folder.")] = "interpolation.png",
    best: Best = False, raw_generator: RawGenerator = False, runs: Runs = None, device: Device = "auto",
):
    """Render latent interpolations: one row per pair of endpoints.

    Examples:
      gan interpolate --pairs 8 --steps 10 -o grid.png
      gan interpolate --mode lerp --seeds 3,7,11 -o anim.gif
      gan interpolate --reject 0.6 -o - | gan score --features mnist
    """
    import torch

    from gancli.models import to_uint8
    from gancli.runs import resolve_checkpoint
    from gancli.sampling import forward_rows, interpolation_latents, score_images, threshold_accept
    from gancli.streams import Samples
    from gancli.training import load_models, resolve_device

    dest = output if output and output.endswith((".png", ".gif")) else binary_output(output)
    pair_seeds = parse_ints(seeds, "--seeds") if seeds else tuple(range(seed, seed + pairs))
    path = resolve_checkpoint(checkpoint, runs, best)
    dev = resolve_device(device)
    config, G, D, meta = load_models(path, device, raw_generator=raw_generator)
    calibration = stored_calibration(meta, path, used=reject is not None)
    accept = threshold_accept(config, reject, calibration) if reject is not None else None

    def endpoints(pair_seed: int) -> torch.Tensor:
        rng = torch.Generator().manual_seed(pair_seed)
        if accept is None:
            return torch.randn(2, config.z_dim, generator=rng)
        z = torch.randn(256, config.z_dim, generator=rng)
        keep = accept(score_images(config, D, to_uint8(forward_rows(G, z, 256, dev)), 256, dev))
        if keep.sum() < 2:
            raise GancliError(f"fewer than 2 of 256 candidates reach confidence {reject} for seed {pair_seed}",
                              "lower --reject")
        return z[keep][:2]

    ends = torch.stack([endpoints(s) for s in pair_seeds])
    z = interpolation_latents(ends[:, 0], ends[:, 1], steps, mode)
    images = to_uint8(forward_rows(G, z, 500, dev))
    if dest.endswith(".png"):
        from gancli.streams import save_png_grid

        save_png_grid(images, dest, nrow=steps)
        console.print(f"wrote {len(pair_seeds)}x{steps} grid to {dest}", highlight=False)
    elif dest.endswith(".gif"):
        save_gif(images.view(len(pair_seeds), steps, *images.shape[1:]), Path(dest))
        console.print(f"wrote {steps}-frame animation to {dest}", highlight=False)
    else:
        write_output(Samples(images, z, None, {"source": str(path), "mode": mode, "seeds": list(pair_seeds),
                                               "steps": steps}), dest)


def save_gif(frames, path: Path) -> None:
    """[pairs, steps, C, H, W] -> an animated GIF: one frame per step, pairs side by side, there and back."""
    from gancli.streams import tile, to_pil

    pictures = []
    for t in list(range(frames.shape[1])) + list(range(frames.shape[1] - 2, 0, -1)):
        pictures.append(to_pil(tile(frames[:, t], nrow=frames.shape[0])).convert("P"))
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=80, loop=0)
