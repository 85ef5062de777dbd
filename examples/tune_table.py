"""A `gan tune` study's trials as Markdown, from its `gan tune --show --json` (tune.sh's page, frontier.sh's searches)."""

from __future__ import annotations

from pathlib import Path


def space_epochs(space: Path) -> int:
    """A space file's epochs a trial (its shared `epochs = N`)."""
    return int(next(line.split("=")[1] for line in space.read_text().splitlines() if line.startswith("epochs")))


def search_lines(study: dict, per_trial: int, folder: str, asked: int | None = None) -> list[str]:
    """The compute it saved, a line per trial and the best trial, whose BEST.toml and tune.png are in `folder`
    (a path relative to the page); `asked`, the trials asked for, where the page knows it."""
    trials = study["trials"]
    trained = sum(t["epochs"] for t in trials)
    states = {s: sum(t["state"] == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    hours = sum(t["seconds"] for t in trials) / 3600
    running = f", {states['RUNNING']} running or interrupted" if states["RUNNING"] else ""
    lines = [
        f"**{len(trials)} trials**" + (f" (of {asked} asked for)" if asked else "")
        + f": {states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed{running}"
        + f". **{trained} epochs trained** of the {len(trials) * per_trial} that {len(trials)} unpruned trials would"
        f" have cost ({1 - trained / max(1, len(trials) * per_trial):.0%} saved), {hours:.1f} hours of training.",
        "",
        "| trial | state | params | last evaluated FID | epochs | why |",
        "|---:|---|---|---:|---:|---|",
    ]
    for t in trials:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        value = f"{t['value']:.2f}" if t["value"] is not None else ""
        why = (t["reason"] or "") if t["state"] != "COMPLETE" else ""
        lines.append(f"| {t['number']} | {t['state']} | {params} | {value} | {t['epochs']} | {why} |")
    best = study["best"]
    if best:
        lines += ["", f"**Best: trial {best['number']}**, last evaluated FID {best['value']:.2f}: `{best['params']}` "
                  f"([BEST.toml]({folder}/BEST.toml)). ![history and importances]({folder}/tune.png)"]
    return lines
