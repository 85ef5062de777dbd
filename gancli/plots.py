"""`gan plot`: training curves of one or several runs on shared axes, and a run's grids as a GIF.

matplotlib is imported in these functions only (Agg backend: no display needed), so that the
other commands start without it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from gancli.checkpoint import atomic_write
from gancli.errors import GancliError
from gancli.runs import number, run_history

# panel title -> the log fields it draws (solid, then dashed) and whether its y axis is logarithmic
PANELS: dict[str, tuple[tuple[str, ...], bool]] = {
    "loss": (("d_loss", "g_loss"), False),
    "D accuracy": (("d_acc_real", "d_acc_fake"), False),
    "gradient norm": (("grad_norm_d", "grad_norm_g"), True),
    "Wasserstein estimate": (("wasserstein",), False),
    "FID (evaluation classifier)": (("fid",), True),
    "precision / recall": (("precision", "recall"), False),
    "learning rate": (("lr_d", "lr_g"), True),
    "mode-seeking weight": (("ms_lambda",), False),
}
# drawn only when some run changes them over its epochs: a flat line says nothing
SCHEDULE_PANELS = ("learning rate", "mode-seeking weight")
STYLES = ("-", "--")
CURVE_FORMATS = (".png", ".svg", ".pdf")
MAX_RUNS = 10  # the colours of matplotlib's tab10


def run_series(run: Path) -> dict:
    """One run's curves: {"run", "path", "switches" (epochs where an objective changed), "series":
    {field: [[epoch, value], ...]}}, its parents' epochs first (a child run continues their curve)."""
    records, switches = run_history(run)
    fields = {f for fields, _ in PANELS.values() for f in fields}
    series: dict[str, list] = {}
    for record in records:
        for key in fields & record.keys():
            if number(record[key]) is not None:  # a NaN or a string is no point of a curve (nor valid JSON)
                series.setdefault(key, []).append([record["epoch"], record[key]])
    return {"run": run.name, "path": str(run), "switches": switches, "series": series}


def _panels(curves: list[dict]) -> list[str]:
    def drawn(title: str) -> bool:
        fields = PANELS[title][0]
        values = [{v for _, v in c["series"].get(f, [])} for c in curves for f in fields]
        return any(values) and (title not in SCHEDULE_PANELS or any(len(v) > 1 for v in values))

    return [title for title in PANELS if drawn(title)]


def plot_curves(runs: list[Path], output: Path) -> dict:
    """Draw the runs' curves into `output` (.png, .svg or .pdf); returns what was drawn as JSON-ready data."""
    if output.suffix.lower() not in CURVE_FORMATS:
        raise GancliError(f"-o {output}: curves are written as {', '.join(CURVE_FORMATS)}", "e.g. -o curves.png")
    if len(runs) > MAX_RUNS:
        raise GancliError(f"{len(runs)} runs: one figure tells up to {MAX_RUNS} apart by colour", "plot them in groups")
    curves = [run_series(run) for run in runs]
    if not any(c["series"] for c in curves):
        raise GancliError(f"no epoch logged yet in {', '.join(str(r) for r in runs)}", "plot a run that has finished an epoch")
    panels = _panels(curves)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 2.8 * rows + 0.6), squeeze=False, sharex=True)
    colours = plt.get_cmap("tab10").colors
    for ax, title in zip(axes.flat, panels, strict=False):
        fields, log_scale = PANELS[title]
        for colour, c in zip(colours, curves, strict=False):
            for style, field in zip(STYLES, fields, strict=False):
                points = c["series"].get(field, [])
                if points:
                    x, y = zip(*points, strict=True)
                    ax.plot(x, y, style, color=colour, linewidth=1.2, marker="o" if len(x) <= 40 else None, markersize=2.5)
            for switch in c["switches"]:
                ax.axvline(switch, color=colour, linestyle=":", linewidth=1)
        key = ", ".join(f"{field} {'solid' if style == '-' else 'dashed'}" for style, field in zip(STYLES, fields, strict=False))
        ax.set_title(title if len(fields) == 1 else f"{title} ({key})", fontsize=9)
        values = [v for c in curves for f in fields for _, v in c["series"].get(f, [])]
        if log_scale and min(values) > 0:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            # within a decade the minor ticks are the only labels; across decades they would crowd
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}") if max(values) < 10 * min(values)
                                         else NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for column in range(columns):  # the lowest panel drawn in each column carries the epoch axis
        lowest = axes[max(r for r in range(rows) if r * columns + column < len(panels)), column]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("epoch")
    labels = [c["run"] + (f" (switch at {', '.join(map(str, c['switches']))}: dotted)" if c["switches"] else "")
              for c in curves]
    handles = [plt.Line2D([], [], color=colour) for colour in colours[:len(curves)]]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(curves), 3), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (2.8 * rows + 0.6) * (1 + (len(curves) - 1) // 3)))
    _save_figure(fig, output)
    return {"output": str(output), "panels": panels, "runs": curves}


def _save_figure(fig, output: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()  # then one atomic write: a full disk leaves no truncated figure
    try:
        fig.savefig(buffer, format=output.suffix[1:].lower(), dpi=100)
    finally:
        plt.close(fig)
    atomic_write(output, buffer.getvalue())


def plot_tuning(history: list[dict], importances: dict[str, float], output: Path, target: str) -> Path:
    """`gan tune`'s figure: each trial's value (complete: dots, with the best so far as a line; pruned:
    crosses at their last evaluated FID; failed: left out) and the searched options' importances
    (Optuna's PED-ANOVA), as bars. `history`: [{"number", "state", "value"}], where `value` is a pruned
    trial's last intermediate value."""
    if output.suffix.lower() not in CURVE_FORMATS:
        raise GancliError(f"--plot {output}: figures are written as {', '.join(CURVE_FORMATS)}", "e.g. --plot tune.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": (3, 2)})
    for state, marker, colour in (("COMPLETE", "o", "tab:blue"), ("PRUNED", "x", "tab:grey")):
        points = [(t["number"], t["value"]) for t in history if t["state"] == state and t["value"] is not None]
        if points:
            left.scatter(*zip(*points, strict=True), marker=marker, color=colour, s=18, label=state.lower())
    complete = sorted((t["number"], t["value"]) for t in history if t["state"] == "COMPLETE")
    if complete:
        best = [min(v for _, v in complete[:i + 1]) for i in range(len(complete))]
        left.step([n for n, _ in complete], best, where="post", color="tab:orange", label="best so far")
        values = [t["value"] for t in history if t["value"] is not None]
        if min(values) > 0:
            left.set_yscale("log")
            plain = FuncFormatter(lambda v, _: f"{v:g}")
            left.yaxis.set_major_formatter(plain)
            left.yaxis.set_minor_formatter(plain if max(values) < 10 * min(values) else NullFormatter())
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("trial")
    left.set_ylabel(f"{target} evaluated FID")
    left.set_title("optimisation history", fontsize=9)
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8, frameon=False)
    left.grid(alpha=0.3)
    if importances:
        names = list(importances)[::-1]
        right.barh(names, [importances[n] for n in names], color="tab:blue")
        right.set_xlabel("importance (PED-ANOVA)")
    else:
        right.text(0.5, 0.5, "importances need 4 complete trials\nwith searched options that vary", ha="center",
                   va="center", fontsize=9)
        right.set_axis_off()
    right.set_title("parameter importances", fontsize=9)
    fig.tight_layout()
    _save_figure(fig, output)
    return output


def _captioned(path: Path, caption: str):
    """A grid PNG under a white band with `caption`, or None where the file is no readable image (empty, truncated)."""
    from PIL import Image, ImageDraw

    try:
        with Image.open(path) as grid:
            frame = Image.new("RGB", (grid.width, grid.height + 16), "white")
            frame.paste(grid.convert("RGB"), (0, 16))
    except (OSError, SyntaxError, ValueError):  # PIL's kinds for a damaged file: unidentified, truncated, bad chunk
        return None
    ImageDraw.Draw(frame).text((4, 2), caption, fill="black")
    return frame


def grids_animation(run: Path, output: Path, frame_ms: int = 300, warn: Callable[[str], None] = lambda message: None) -> int:
    """The run's grids/epoch-NNN.png as an animated GIF, each frame captioned with its epoch; returns the frame count.

    An unreadable grid (a run killed or a disk full while it was written) is left out and said to `warn`:
    the other epochs still animate, and each frame's caption shows which epochs are there."""
    from gancli.streams import save_animation

    if output.suffix.lower() != ".gif":
        raise GancliError(f"-o {output}: --grids writes an animated .gif", "e.g. -o evolution.gif")
    grids = sorted((run / "grids").glob("epoch-*.png"))
    if not grids:
        raise GancliError(f"{run} has no grids/epoch-*.png yet", "they are written after every epoch")
    frames = []
    for path in grids:
        frame = _captioned(path, f"{run.name}  epoch {int(path.stem.split('-')[1])}")
        if frame is None:
            warn(f"{path} is no readable PNG: left out")
        else:
            frames.append(frame)
    if not frames:
        raise GancliError(f"none of the {len(grids)} grids in {run / 'grids'} is a readable PNG", "train an epoch to write one")
    save_animation(frames, output, frame_ms)
    return len(frames)
