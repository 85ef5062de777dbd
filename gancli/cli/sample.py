"""`gan sample` and `gan interpolate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from gancli.cli._io import binary_output, console, parse_ints, say, user_errors, write_output
from gancli.cli.options import POSITIVE, Best, Checkpoint, Device, KeepTop, LatentSeed, Output, PassBatch, RawGenerator, Reject, Runs
from gancli.config import INTERPOLATION_MODES, REJECT_METHODS
from gancli.errors import GancliError

Opt = typer.Option


@user_errors("sample")
def sample(
    checkpoint: Checkpoint = None,
    n: Annotated[int, Opt("-n", min=1, help="Number of images.")] = 10000,
    seed: LatentSeed = 0,
    batch_size: PassBatch = 500,
    output: Output = None,
    grid: Annotated[Path | None, Opt("--grid", help="Also save the first 64 images as a PNG grid.")] = None,
    reject: Reject = None,
    reject_method: Annotated[Literal[REJECT_METHODS], Opt("--reject-method",
        help="threshold (confidence >= --reject) or drs (Azadi et al. 2019).")] = "threshold",
    drs_percentile: Annotated[float, Opt("--drs-percentile", min=0, max=100,
        help="DRS gamma: this percentile of F on the burn-in maps to acceptance 1/2.")] = 80.0,
    keep_top: KeepTop = None,
    max_draws: Annotated[int | None, Opt("--max-draws", min=1, help="Give up after this many draws \\[default: 100 n].")] = None,
    mix: Annotated[bool, Opt("--mix", help="z = a z1 + (1-a) z2, a ~ U(0,1): precision up, recall down.")] = False,
    truncation: Annotated[float | None, Opt("--truncation", callback=POSITIVE,
        help="Draw latent components from N(0, 1) truncated to [-PSI, PSI]: precision up, recall down.")] = None,
    klass: Annotated[str | None, Opt("--class", help="A conditional model's class to draw, by index or name "
                                     "(7, Sandal) \\[default: every class in turn, as many of each].")] = None,
    classes: Annotated[str | None, Opt("--classes", help="Several classes in turn, e.g. 0,3,7.")] = None,
    per_class: Annotated[int | None, Opt("--per-class", min=1, help="This many of each class (replaces -n).")] = None,
    best: Best = False, raw_generator: RawGenerator = False, runs: Runs = None, device: Device = "auto",
):
    """Generate images as a samples stream (stdout when piped), a .safetensors file or PNGs. A
    class-conditional model's samples carry the class each was drawn for (`labels`); its grid has a row per class.

    Examples:
      gan sample -n 10000 | gan score
      gan sample -n 10000 --reject 0.6 --mix -o samples.safetensors
      gan sample runs/x -n 64 --reject-method drs -o pngs/ --grid grid.png
      gan sample -n 1000 --keep-top 0.5 > top.safetensors
      gan sample runs/x --best -n 10000 | gan score     # the run's best evaluated epoch
      gan sample runs/cond --class 7 -n 100 -o sevens/  # a conditional run: "draw me a 7"
    """
    from rich.progress import Progress

    from gancli.api import sample as draw
    from gancli.streams import SAMPLES_FILE, check_picture, grid_images, save_png_grid

    if klass is not None and classes is not None:
        raise GancliError("--class and --classes exclude each other", "give one")
    asked = (klass,) if klass is not None else tuple(classes.split(",")) if classes is not None else None
    dest = binary_output(output)
    if grid is not None:
        check_picture(grid, "--grid", (".png",))
        if dest != "-" and not dest.endswith(SAMPLES_FILE) and Path(dest).resolve() in Path(grid).resolve().parents:
            raise GancliError(f"--grid {grid} is inside -o {dest}: the grid would mix with the images",
                              "put the grid beside the folder")
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("sampling", total=None if per_class else n)  # --per-class: n is the model's classes
        samples = draw(checkpoint, n, seed, reject=reject, reject_method=reject_method, drs_percentile=drs_percentile,
                       keep_top=keep_top, max_draws=max_draws, mix=mix, truncation=truncation, best=best,
                       raw_generator=raw_generator, runs=runs, batch_size=batch_size, device=device, classes=asked,
                       per_class=per_class, notify=say,
                       on_progress=lambda kept, drawn: progress.update(task, completed=kept))
    if grid:
        save_png_grid(grid_images(samples), grid, nrow=8)
    write_output(samples, dest)


@user_errors("interpolate")
def interpolate(
    checkpoint: Checkpoint = None,
    pairs: Annotated[int, Opt("--pairs", min=1, help="Rows: pairs of endpoints.")] = 8,
    steps: Annotated[int, Opt("--steps", min=2, help="Images per row, endpoints included.")] = 10,
    mode: Annotated[Literal[INTERPOLATION_MODES], Opt("--mode", help="slerp (White 2016) or lerp.")] = "slerp",
    seeds: Annotated[str | None, Opt("--seeds", help="One seed per pair, e.g. 3,7,11 \\[default: --seed, --seed+1, ...].")] = None,
    seed: LatentSeed = 0,
    reject: Reject = None,
    output: Annotated[str | None, Opt("-o", "--output",
        help="grid.png, anim.gif, frames.safetensors, - or a folder.")] = "interpolation.png",
    klass: Annotated[str | None, Opt("--class", help="A conditional model's class, fixed on every row "
                                     "\\[default: row i draws class i in turn].")] = None,
    between_classes: Annotated[str | None, Opt("--between-classes", help="A conditional model's two classes, e.g. 3,8: "
                                               "each row keeps one latent and moves from the first class to the second.")] = None,
    best: Best = False, raw_generator: RawGenerator = False, runs: Runs = None, device: Device = "auto",
):
    """Render latent interpolations: one row per pair of endpoints.

    Examples:
      gan interpolate --pairs 8 --steps 10 -o grid.png
      gan interpolate --mode lerp --seeds 3,7,11 -o anim.gif
      gan interpolate --reject 0.6 -o - | gan score --features mnist
      gan interpolate runs/cond --between-classes 3,8 -o three-to-eight.png
    """
    from gancli.api import interpolate as render
    from gancli.streams import PICTURES, check_picture, save_gif, save_png_grid

    picture = Path(output).suffix.lower() if output else None
    if picture in PICTURES:
        check_picture(output, "-o")
        dest = output
    else:
        dest = binary_output(output)
    pair_seeds = parse_ints(seeds, "--seeds") if seeds else tuple(range(seed, seed + pairs))
    pair = tuple(between_classes.split(",")) if between_classes is not None else None
    frames = render(checkpoint, pair_seeds, steps, mode=mode, reject=reject, best=best, raw_generator=raw_generator,
                    runs=runs, device=device, klass=klass, between_classes=pair, notify=say)
    if picture == ".png":
        save_png_grid(frames.images, dest, nrow=steps)
        say(f"wrote {len(pair_seeds)}x{steps} grid to {dest}")
    elif picture == ".gif":
        save_gif(frames.images.view(len(pair_seeds), steps, *frames.images.shape[1:]), dest)
        say(f"wrote {steps}-frame animation to {dest}")
    else:
        write_output(frames, dest)
