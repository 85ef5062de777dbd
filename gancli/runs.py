"""Run folders (design note section 3): runs/<name>/{checkpoint.safetensors, log.jsonl, grids/}."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gancli.errors import GancliError

CHECKPOINT = "checkpoint.safetensors"
LOG = "log.jsonl"


def runs_root(runs: str | None = None) -> Path:
    return Path(runs or os.environ.get("GANCLI_RUNS") or "runs")


def new_run_dir(root: Path, name: str | None, label: str) -> Path:
    """Create runs/<name>; an explicit name must be new, a generated one gets a suffix if taken."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        if name:
            run = root / name
            if run.exists():
                raise GancliError(f"run {run} exists", "continue it with `gan resume`, or pick another --name")
            run.mkdir()
            return run
        base = f"{label}-{time.strftime('%Y%m%d-%H%M%S')}"
        for i in range(1, 1000):
            run = root / (base if i == 1 else f"{base}-{i}")
            try:
                run.mkdir()
                return run
            except FileExistsError:
                continue
    except (PermissionError, NotADirectoryError, FileNotFoundError) as e:
        raise GancliError(f"cannot create a run in {root}: {e.strerror}", "pass a writable --runs DIR or set GANCLI_RUNS") from None
    raise GancliError(f"too many runs named {base} in {root}")


def set_latest(run: Path) -> None:
    """Point runs/latest at `run` (a relative symlink, replaced atomically)."""
    link = run.parent / "latest"
    tmp = run.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(run.name, tmp)
    os.replace(tmp, link)


def resolve_checkpoint(checkpoint: str | None, runs: str | None = None) -> Path:
    """A checkpoint path, a run folder, or (None) the latest run's checkpoint."""
    if checkpoint:
        path = Path(checkpoint)
        return path / CHECKPOINT if path.is_dir() else path
    latest = runs_root(runs) / "latest"
    if not latest.exists():
        raise GancliError(f"no latest run in {runs_root(runs)}", "train one with `gan train`, or name a checkpoint")
    return latest.resolve() / CHECKPOINT


def read_log(run: Path) -> list[dict]:
    path = run / LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_log(run: Path, record: dict) -> None:
    with open(run / LOG, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def truncate_log(run: Path, epoch: int) -> None:
    """Drop log lines past the checkpoint's epoch (a kill between log and checkpoint writes)."""
    records = read_log(run)
    kept = [r for r in records if r["epoch"] <= epoch]
    if len(kept) != len(records):
        (run / LOG).write_text("".join(json.dumps(r) + "\n" for r in kept))
