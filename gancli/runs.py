"""Run folders (design note section 3): runs/<name>/{checkpoint.safetensors, log.jsonl, grids/}."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
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
    except OSError as e:  # a file where a folder should be, no permission, a read-only disk
        raise GancliError(f"cannot create a run in {root}: {e.strerror}", "pass a writable --runs DIR or set GANCLI_RUNS") from None
    raise GancliError(f"too many runs named {base} in {root}")


@contextlib.contextmanager
def discarded_unless_saved(run: Path, new: bool) -> Iterator[None]:
    """A new run folder whose work fails before its first checkpoint is removed: no empty run is left behind."""
    try:
        yield
    except GancliError:
        if new and not (run / CHECKPOINT).exists():
            shutil.rmtree(run, ignore_errors=True)
        raise


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
    """The log's records; a torn last line (a kill in the middle of a write) is left out."""
    path = run / LOG
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("epoch"), int)]


def append_log(run: Path, record: dict) -> None:
    try:
        with open(run / LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise GancliError(f"cannot write {run / LOG}: {e.strerror}; the checkpoint was not updated",
                          "free some disk space or fix the folder's permissions") from None


def truncate_log(run: Path, epoch: int) -> None:
    """Drop log lines past the checkpoint's epoch (a kill between log and checkpoint writes)."""
    from gancli.checkpoint import atomic_write  # it imports torch; the other run-folder helpers need none

    if not (run / LOG).exists():
        return
    kept = [r for r in read_log(run) if r["epoch"] <= epoch]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    if text != (run / LOG).read_text():
        atomic_write(run / LOG, text.encode())
