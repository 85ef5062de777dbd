"""Run folders (design note section 3): runs/<name>/{checkpoint.safetensors, best.safetensors, log.jsonl, grids/},
what a run is (its history through its parents, its status) and `gan runs`' summaries. No torch here."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from gancli.checkpoint import Header, read_header
from gancli.errors import GancliError

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"  # a copy of the checkpoint at the best evaluated epoch (lowest FID)
LOG = "log.jsonl"
DIVERGED = "diverged.json"  # the divergence guard's reason; removed by the next saved epoch
TRAINING = ".training"  # the run's lock while a process trains it, holding that process's pid and host
LATEST = "latest"  # the runs folder's link to its most recent run


def runs_root(runs: str | None = None) -> Path:
    return Path(runs or os.environ.get("GANCLI_RUNS") or "runs")


def check_run_name(name: str | None) -> None:
    """Refuse, before any work, a --name that cannot be a run folder of its own: `latest` is the runs
    folder's link, a leading dot hides a folder (and names the run's own marks), a slash nests one."""
    if name is None:
        return
    if name in (LATEST, "", ".", "..") or name.startswith(".") or "/" in name or "\0" in name:
        raise GancliError(f"--name {name!r} is reserved or not a folder name",
                          f"pick a plain name: not {LATEST!r}, no leading dot, no slash")


def new_run_dir(root: Path, name: str | None, label: str) -> Path:
    """Create runs/<name> with its empty log (a folder with a log is a run: `is_run`); an explicit name
    must be new, a generated one gets a suffix if taken."""
    check_run_name(name)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if name:
            run = root / name
            if run.exists() or run.is_symlink():
                raise GancliError(f"run {run} exists", "continue it with `gan resume`, or pick another --name")
            run.mkdir()
        else:
            run = _new_generated(root, f"{label}-{time.strftime('%Y%m%d-%H%M%S')}")
        (run / LOG).touch()
        return run
    except OSError as e:  # a file where a folder should be, no permission, a read-only disk
        raise GancliError(f"cannot create a run in {root}: {e.strerror}", "pass a writable --runs DIR or set GANCLI_RUNS") from None


def _new_generated(root: Path, base: str) -> Path:
    for i in range(1, 1000):
        run = root / (base if i == 1 else f"{base}-{i}")
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue
    raise GancliError(f"too many runs named {base} in {root}")


def is_run(folder: Path) -> bool:
    """A run folder is one that `new_run_dir` made: it has a log, empty until the first epoch ends.
    A lone `checkpoint.safetensors` elsewhere (a download, a copy) is no run, and resume never writes beside it."""
    return (folder / LOG).is_file()


@contextlib.contextmanager
def discarded_unless_saved(run: Path, new: bool) -> Iterator[None]:
    """A new run folder whose work fails before its first checkpoint (an error, Ctrl-C during setup) is
    removed: no empty run is left behind."""
    try:
        yield
    except BaseException:
        if new and not (run / CHECKPOINT).exists():
            shutil.rmtree(run, ignore_errors=True)
        raise


def set_latest(run: Path) -> None:
    """Point runs/latest at `run` (a relative symlink, replaced atomically). `run` is resolved first: a run
    reached through runs/latest itself, or as `.`, must not become a link to itself."""
    run = run.resolve()
    link = run.parent / LATEST
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
        latest = runs_root(runs) / LATEST
        if not latest.exists():
            raise GancliError(f"no latest run in {runs_root(runs)}", "train one with `gan train`, or name a checkpoint")
        run = latest.resolve()
    if run is None:
        return path
    if best and not (run / BEST).is_file():
        raise GancliError(f"{run} has no {BEST}",
                          "it is written at the run's first evaluated epoch (--eval-every, MNIST or Fashion-MNIST data)")
    return run / (BEST if best else CHECKPOINT)


# flock's errors on a filesystem that has no locks (Lustre mounted without flock, NFS without lockd)
NO_LOCKS = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)
BUSY_RETRY_S = 0.5  # `gan runs` takes the lock shared for an instant to look: a trainer waits that out


class RunLock:
    """One writer per run: an exclusive flock on the run's `.training` file, held while a process
    trains the run. The kernel drops a flock when its process ends, however it ends (kill -9, a power
    cut), so a crashed holder's lock is stale at once, never permanent. The file also holds the
    holder's pid and host, for the message that refuses a second writer. On a filesystem without
    locks the mark is all there is: the run trains, unguarded, as it would have before locks."""

    def __init__(self, run: Path):
        self.path = Path(run) / TRAINING
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                raise _busy(self.path.parent) from None
            except OSError as e:
                if e.errno not in NO_LOCKS:
                    os.close(fd)
                    raise GancliError(f"cannot lock {self.path.parent} for training: {e.strerror}") from None
                break
            try:  # the holder before us may have removed the file after we opened it: lock the one there now
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        with contextlib.suppress(OSError):  # a mark that cannot be written (a read-only descriptor) locks all the same
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self.fd = fd
        return self

    def _open(self) -> int:
        """The lock file, created readable and writable as the umask allows (a group's members resume each
        other's runs); read-only where another user's file is not writable: flock needs no write access."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            try:
                return os.open(self.path, os.O_RDONLY)
            except OSError as e:
                raise GancliError(f"cannot lock {self.path.parent} for training: {e.strerror}",
                                  "fix the folder's permissions") from None
        except OSError as e:
            raise GancliError(f"cannot lock {self.path.parent} for training: {e.strerror}",
                              "fix the folder's permissions") from None

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still holding it: a waiting opener then sees another file and retries
        os.close(self.fd)
        self.fd = None


def _busy(run: Path) -> GancliError:
    try:
        mark = json.loads((run / TRAINING).read_text())
        holder = f"pid {int(mark['pid'])} on {str(mark['host'])[:60]}"
    except (OSError, ValueError, KeyError, TypeError):
        holder = "another process"
    return GancliError(f"run {run} is being trained now ({holder}); a run has one writer at a time",
                       "wait for it to finish or stop it, or start a child run from a copy of its checkpoint")


def training_now(run: Path) -> bool:
    """Whether a live process holds the run's lock (RunLock)."""
    try:
        fd = os.open(run / TRAINING, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:  # no locks on this filesystem: nothing tells
        return False
    finally:
        os.close(fd)


def check_not_training(run: Path) -> None:
    """Refuse, before any work, to continue a run that another process trains now."""
    if training_now(run):
        raise _busy(run)


def parent_run(run: Path, header: Header) -> Path | None:
    """The run folder of a run's parent checkpoint: where it was recorded (relative to where resume ran),
    else a folder of that name beside the run; None when the parent was no run's checkpoint."""
    if header.parent is None:
        return None
    for folder in (Path(header.parent).parent, run.parent / Path(header.parent).parent.name):
        if is_run(folder) and folder.resolve() != run.resolve():
            return folder
    return None


def run_history(run: Path) -> tuple[list[dict], list[int]]:
    """The run's log records, preceded by its parents' up to where each child started; and those epochs
    (where `resume --div` switched objective, or a copy was continued)."""
    records, switches, current, seen = read_log(run), [], run, {run.resolve()}
    while (header := read_header(current / CHECKPOINT)) and (parent := parent_run(current, header)):
        if parent.resolve() in seen:
            break
        seen.add(parent.resolve())
        start = records[0]["epoch"] if records else header.progress.epoch + 1
        switches.insert(0, start - 1)
        records = [r for r in read_log(parent) if r["epoch"] < start] + records
        current = parent
    return records, switches


def _knobs(config) -> str:
    """The config's fields that differ from its objective's defaults, e.g. `r1=0 lr_d=0.0001`."""
    from dataclasses import fields

    from gancli.config import make_config

    shown_elsewhere = ("objective", "div", "alpha", "g_loss", "epochs", "image_shape", "classes", "eval_every")
    defaults = make_config(config.objective)
    text = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)
    return " ".join(f"{f.name}={text(getattr(config, f.name))}" for f in fields(config)
                    if f.name not in shown_elsewhere and getattr(config, f.name) != getattr(defaults, f.name))


def number(value) -> float | None:
    """A log field's value when it is a finite number (not a bool), else None: a hand-edited or damaged
    line must not break a summary, nor a NaN its JSON."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def fid_protocol(record: dict) -> tuple:
    """What an evaluated epoch's FID compares on: its --eval-n (a FID over fewer images is biased upwards)
    and its classifier (two classifiers' FIDs are two scales). Logs older than `eval_features` were
    all scored on the MNIST classifier, the only one there was."""
    return record.get("eval_n"), record.get("eval_features", "mnist-classifier")


def comparable_fids(records: list[dict]) -> list[dict]:
    """The evaluated records whose FIDs compare with the latest one's (the same `fid_protocol`); those
    without a finite FID left out."""
    evaluated = [r for r in records if number(r.get("fid")) is not None]
    return [r for r in evaluated if fid_protocol(r) == fid_protocol(evaluated[-1])] if evaluated else []


def run_summary(run: Path) -> dict:
    """One row of `gan runs`: what the run trains, how far, its FIDs (and on which classifier), the
    classes its latest evaluation found, its training time and its status (running, finished,
    interrupted, diverged; unreadable for a damaged checkpoint)."""
    header = read_header(run / CHECKPOINT)
    config, progress = (header.config, header.progress) if header else (None, None)
    records = read_log(run)
    evaluated = comparable_fids(records)
    best = min(evaluated, key=lambda r: r["fid"], default=None)
    parent = parent_run(run, header) if header else None
    if header is None:
        status = "unreadable"
    elif training_now(run):
        status = "running"
    elif (run / DIVERGED).is_file():
        status = "diverged"
    elif progress.epoch >= config.epochs and not progress.batch_in_epoch:
        status = "finished"
    else:
        status = "interrupted"
    seconds = sum(number(r.get(k)) or 0.0 for r in records for k in ("seconds", "eval_seconds"))
    return {"name": run.name, "path": str(run), "objective": config.label if config else None,
            "knobs": _knobs(config) if config else "", "epochs": progress.epoch if progress else None,
            "configured_epochs": config.epochs if config else None,
            "parent": parent.name if parent else header.parent if header else None,
            "last_fid": evaluated[-1]["fid"] if evaluated else None, "last_fid_epoch": evaluated[-1]["epoch"] if evaluated else None,
            "best_fid": best["fid"] if best else None, "best_fid_epoch": best["epoch"] if best else None,
            "fid_n": evaluated[-1].get("eval_n") if evaluated else None,
            "fid_features": fid_protocol(evaluated[-1])[1] if evaluated else None,
            **{k: evaluated[-1].get(k) if evaluated else None for k in ("classes_present", "classes_total", "classes_missing")},
            "seconds": seconds, "status": status}


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
    from gancli.checkpoint import atomic_write

    if not (run / LOG).exists():
        return
    kept = [r for r in read_log(run) if r["epoch"] <= epoch]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    if text != (run / LOG).read_text():
        atomic_write(run / LOG, text.encode())
