"""Run folders (design note section 3): runs/<name>/{checkpoint.safetensors, best.safetensors, log.jsonl, grids/},
what a run is (its history through its parents, its status) and `gan runs`' summaries. No torch here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from gancli.errors import GancliError

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"  # a copy of the checkpoint at the best evaluated epoch (lowest FID)
LOG = "log.jsonl"
DIVERGED = "diverged.json"  # the divergence guard's reason; removed by the next saved epoch
TRAINING = ".training"  # pid and host of the process training the run, while it trains


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


def resolve_checkpoint(checkpoint: str | None, runs: str | None = None, best: bool = False) -> Path:
    """A checkpoint path, a run folder, or (None) the latest run's checkpoint; with `best`, the run's best.safetensors."""
    if checkpoint:
        path = Path(checkpoint)
        if best and not path.is_dir():
            raise GancliError(f"--best picks a run folder's {BEST}, and {path} is not a run folder", "pass the run's folder")
        run = path if path.is_dir() else None
    else:
        latest = runs_root(runs) / "latest"
        if not latest.exists():
            raise GancliError(f"no latest run in {runs_root(runs)}", "train one with `gan train`, or name a checkpoint")
        run = latest.resolve()
    if run is None:
        return path
    if best and not (run / BEST).is_file():
        raise GancliError(f"{run} has no {BEST}", "it is written at the run's first evaluated epoch (--eval-every, MNIST data)")
    return run / (BEST if best else CHECKPOINT)


@contextlib.contextmanager
def marked_training(run: Path) -> Iterator[None]:
    """While training, the run holds this process's pid and host, so that `gan runs` can tell a running run
    from an interrupted one. Advisory: a folder that refuses the mark is trained all the same."""
    marker = run / TRAINING
    with contextlib.suppress(OSError):
        marker.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            marker.unlink(missing_ok=True)


def _training_now(run: Path) -> bool:
    try:
        mark = json.loads((run / TRAINING).read_text())
        pid, host = int(mark["pid"]), str(mark["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():
        return True  # trained on another machine (a shared disk): its mark is all there is to go by
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # killed without a chance to clean up (kill -9, a power cut)
    except PermissionError:
        pass
    return True


def checkpoint_meta(path: Path) -> dict | None:
    """The gancli metadata of a checkpoint from its header alone (no tensor is read); None when unreadable."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 1 << 26:
                return None
            meta = json.loads(json.loads(f.read(size))["__metadata__"]["gancli"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if isinstance(meta, dict) else None


def parent_run(run: Path, meta: dict) -> Path | None:
    """The run folder of a run's parent checkpoint: where it was recorded (relative to where resume ran),
    else a folder of that name beside the run; None when the parent was no run's checkpoint."""
    parent = meta.get("parent")
    if not isinstance(parent, str):
        return None
    for folder in (Path(parent).parent, run.parent / Path(parent).parent.name):
        if (folder / LOG).is_file() and folder.resolve() != run.resolve():
            return folder
    return None


def run_history(run: Path) -> tuple[list[dict], list[int]]:
    """The run's log records, preceded by its parents' up to where each child started; and those epochs
    (where `resume --div` switched objective, or a copy was continued)."""
    records, switches, current, seen = read_log(run), [], run, {run.resolve()}
    while (meta := checkpoint_meta(current / CHECKPOINT)) and (parent := parent_run(current, meta)):
        if parent.resolve() in seen:
            break
        seen.add(parent.resolve())
        saved = meta.get("epoch")
        start = records[0]["epoch"] if records else saved + 1 if isinstance(saved, int) else 1
        switches.insert(0, start - 1)
        records = [r for r in read_log(parent) if r["epoch"] < start] + records
        current = parent
    return records, switches


def _knobs(config) -> str:
    """The config's fields that differ from its objective's defaults, e.g. `r1=0 lr_d=0.0001`."""
    from dataclasses import fields

    from gancli.config import make_config

    shown_elsewhere = ("objective", "div", "alpha", "g_loss", "epochs", "image_shape", "eval_every")
    defaults = make_config(config.objective)
    text = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)
    return " ".join(f"{f.name}={text(getattr(config, f.name))}" for f in fields(config)
                    if f.name not in shown_elsewhere and getattr(config, f.name) != getattr(defaults, f.name))


def run_summary(run: Path) -> dict:
    """One row of `gan runs`: what the run trains, how far, its FIDs, its training time and its status
    (running, finished, interrupted, diverged; unreadable for a damaged checkpoint)."""
    from gancli.config import TrainConfig

    meta = checkpoint_meta(run / CHECKPOINT) or {}
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (KeyError, GancliError):
        config = None
    records = read_log(run)
    evaluated = [r for r in records if isinstance(r.get("fid"), (int, float))]
    best = min(evaluated, key=lambda r: r["fid"], default=None)
    parent = parent_run(run, meta)
    epoch = meta.get("epoch") if isinstance(meta.get("epoch"), int) else None
    if config is None or epoch is None:
        status = "unreadable"
    elif _training_now(run):
        status = "running"
    elif (run / DIVERGED).is_file():
        status = "diverged"
    elif epoch >= config.epochs and not meta.get("batch_in_epoch"):
        status = "finished"
    else:
        status = "interrupted"
    return {"name": run.name, "path": str(run), "objective": config.label if config else None,
            "knobs": _knobs(config) if config else "", "epochs": epoch, "configured_epochs": config.epochs if config else None,
            "parent": parent.name if parent else meta.get("parent"),
            "last_fid": evaluated[-1]["fid"] if evaluated else None, "last_fid_epoch": evaluated[-1]["epoch"] if evaluated else None,
            "best_fid": best["fid"] if best else None, "best_fid_epoch": best["epoch"] if best else None,
            "seconds": sum(r.get("seconds", 0) + r.get("eval_seconds", 0) for r in records), "status": status}


def list_runs(root: Path) -> list[dict]:
    """`run_summary` of every run folder in `root` (a folder with a checkpoint), by name."""
    if not root.is_dir():
        raise GancliError(f"no runs folder {root}", "train a run with `gan train`, or pass the runs folder")
    return [run_summary(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.is_symlink() and (d / CHECKPOINT).is_file()]


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
