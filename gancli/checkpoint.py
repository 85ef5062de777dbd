"""The one owner of gancli's files on disk: safetensors blobs with gancli metadata (checkpoints, kind
"gan"; samples streams, kind "samples") and the typed record of a checkpoint.

This module alone spells a checkpoint's tensor keys and metadata fields (design note section 3):
tensors `G.*`, `D.*`, `G_ema.*` (state_dict names), optimizer state `opt.G.*` / `opt.D.*`, generator
states `rng.data`, `rng.noise`, `rng.torch`, `rng.cuda` (rank N > 0: `rng.torch.rankN`,
`rng.cuda.rankN`), and metadata {"gancli": "<json>"} with schema, kind, version, config, epoch,
step, batch_in_epoch, totals, parent, objective_start, ema_updates, optimizers, world_size and
calibration. `GanCheckpoint` is that file as one record: `read_checkpoint` is its one reader,
`write_checkpoint` its one writer, and `read_header` reads its config, progress and parent from the
header alone, without torch (`gan runs`). No pickle anywhere; writes are atomic.

torch is imported inside the functions that move tensors, so that the header reader, and with it
`gan runs`, loads none.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from gancli._version import __version__
from gancli.config import TrainConfig
from gancli.errors import GancliError

if TYPE_CHECKING:
    import torch

SCHEMA = 1
CHECKPOINT_KIND = "gan"
NETWORKS = ("G", "D", "G_ema")  # tensor prefixes of the networks' state dicts
OPTIMIZED = ("G", "D")  # the networks with an optimizer: `opt.G.*`, `opt.D.*`
HEADER_LIMIT = 1 << 26  # a header larger than 64 MiB is no checkpoint of ours


def encode(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    from safetensors.torch import save

    meta = {"schema": SCHEMA, "version": __version__, **meta}
    return save({k: v.detach().contiguous() for k, v in tensors.items()}, metadata={"gancli": json.dumps(meta)})


def decode(raw: bytes, origin: str, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and gancli metadata of a blob, checked to be of `kind`."""
    from safetensors.torch import load

    if len(raw) == 0:
        raise GancliError(f"{origin} is empty", "expected a gancli .safetensors file")
    try:
        (header_len,) = struct.unpack("<Q", raw[:8])
        if header_len > len(raw) - 8:
            raise ValueError("header runs past the end of the file")
        header = json.loads(raw[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("gancli", "null"))
        tensors = load(raw)
    except Exception as e:  # struct, json and safetensors each raise their own kinds
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise GancliError(f"{origin} is not a readable safetensors file ({reason})",
                          "the file may be truncated or of another format") from None
    if not isinstance(meta, dict) or "kind" not in meta:
        raise GancliError(f"{origin} is a safetensors file without gancli metadata", "was it written by gan?")
    if not isinstance(meta.get("schema", 0), int):
        raise GancliError(f"{origin} has a malformed gancli schema field", "was it written by gan?")
    if meta["kind"] != kind:
        raise GancliError(f"{origin} holds {str(meta['kind'])[:40]!r}, expected {kind!r}",
                          "pass a checkpoint (runs/NAME/checkpoint.safetensors)" if kind == CHECKPOINT_KIND
                          else "pass a samples stream, e.g. from `gan sample`")
    if meta.get("schema", 0) > SCHEMA:
        raise GancliError(f"{origin} has schema {meta['schema']}, this gancli reads up to {SCHEMA}", "upgrade gancli")
    return tensors, meta


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: a reader sees the old file or the new one.

    A failed write (disk full, permission lost) removes the temp file and raises a GancliError
    that says the previous file is unchanged."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise GancliError(f"cannot write in {path.parent}: {e.strerror}", "choose a writable folder") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from the user's group
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
        raise GancliError(f"cannot write {path}: {e.strerror or e}; {kept}",
                          "free some disk space or fix the folder's permissions") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_copy(source: Path, path: Path) -> None:
    """`path` becomes a copy of `source` in one step: a hard link where the filesystem has them (a
    checkpoint is only ever replaced by rename, never rewritten, so the link keeps this content and
    costs no space), else a copy written with atomic_write."""
    link = path.with_name(f".{path.name}.{os.getpid()}.link")
    try:
        link.unlink(missing_ok=True)
        os.link(source, link)
        os.replace(link, path)
    except OSError:
        link.unlink(missing_ok=True)
        atomic_write(path, Path(source).read_bytes())


def _existing(path: Path | str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise GancliError(f"no such file: {path}", "train first, or pass runs/NAME/checkpoint.safetensors")
    return path


def read_file(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of a gancli file of `kind`."""
    path = _existing(path)
    return decode(path.read_bytes(), str(path), kind)


@dataclass(frozen=True)
class Progress:
    """How far a run has trained: what a resume continues from."""

    epoch: int = 0  # completed epochs
    step: int = 0  # discriminator steps so far
    batch_in_epoch: int = 0  # > 0 only in a checkpoint written by Ctrl-C
    objective_start: int = 0  # the epoch the current objective started at: a warm-up counts from it
    ema_updates: int = 0  # generator steps averaged into G_ema: its warm-up counts them
    world_size: int = 1  # processes that trained the run
    totals: dict = field(default_factory=dict)  # running sums of the current epoch (after Ctrl-C)


# Counters a checkpoint must have, and those that older checkpoints lack (their default applies)
REQUIRED_COUNTERS = ("epoch", "step", "batch_in_epoch")
OPTIONAL_COUNTERS = ("objective_start", "ema_updates", "world_size")


@dataclass(frozen=True)
class Header:
    """What a checkpoint's header says, without its tensors."""

    config: TrainConfig
    progress: Progress
    parent: str | None = None  # the checkpoint this run was resumed from, when it is a child run
    calibration: dict | None = None  # `gan calibrate`'s map and its provenance (calibration.py)


@dataclass
class GanCheckpoint:
    """A checkpoint as one record: everything needed to continue a run exactly, or to sample from it."""

    config: TrainConfig
    G: dict[str, torch.Tensor]
    D: dict[str, torch.Tensor]
    G_ema: dict[str, torch.Tensor] | None  # the moving average of G's weights (--ema), else None
    # The training state: what resume needs and sampling does not. A checkpoint whose training state is
    # missing or damaged still samples; `training_error` says why it cannot be resumed (state.restore_state).
    optimizers: dict[str, dict] | None  # "G", "D" -> a torch optimizer state_dict
    data_rng: torch.Tensor | None  # the data order's generator at the start of the current epoch
    noise_rng: torch.Tensor | None  # the latents' generator
    rank_rngs: list[dict[str, torch.Tensor]]  # rank -> {"torch": global generator, "cuda": its GPU's, when trained there}
    progress: Progress = field(default_factory=Progress)
    parent: str | None = None
    calibration: dict | None = None
    training_error: str | None = None

    @property
    def header(self) -> Header:
        return Header(self.config, self.progress, self.parent, self.calibration)


def _unreadable(origin: str, error: Exception) -> GancliError:
    """The error of a checkpoint whose training state (counters, optimizers, generators) cannot be read."""
    detail = str(error).splitlines()[0][:100] if str(error) else ""
    return GancliError(f"{origin}: the checkpoint's training state is unreadable ({type(error).__name__}: {detail})",
                       "resume from another checkpoint")


def _parse_header(meta: dict, origin: str) -> Header:
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError) as e:
        raise GancliError(f"{origin}: the checkpoint has no readable config ({e})", "was it written by gan?") from None
    except GancliError as e:
        raise GancliError(f"{origin}: {e.message}", "the checkpoint is damaged or forged") from None
    try:
        counters = {k: meta[k] for k in REQUIRED_COUNTERS} | {k: meta[k] for k in OPTIONAL_COUNTERS if k in meta}
        if not all(type(c) is int and c >= 0 for c in counters.values()) or not isinstance(meta["totals"], dict):
            raise ValueError("epoch, step and totals are not counters")
        if counters.get("world_size", 1) < 1:
            raise ValueError("world_size is below 1")
        progress = Progress(**counters, totals=meta["totals"])
    except (KeyError, ValueError) as e:
        raise _unreadable(origin, e) from None
    parent = meta.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise _unreadable(origin, ValueError("parent is not a path"))
    return Header(config, progress, parent, _parse_calibration(meta.get("calibration"), origin))


def _parse_calibration(found, origin: str) -> dict | None:
    """A stored calibration with finite float a and b, or None; anything else is a GancliError."""
    if found is None:
        return None
    hint = "calibrate it again with `gan calibrate`"
    try:
        a, b = float(found["a"]), float(found["b"])
    except (TypeError, KeyError, ValueError):
        raise GancliError(f"{origin}: the checkpoint's calibration is malformed", hint) from None
    if not (math.isfinite(a) and math.isfinite(b)) or isinstance(found["a"], bool) or isinstance(found["b"], bool):
        raise GancliError(f"{origin}: the checkpoint's calibration is not finite", hint)
    return found


def read_header(path: Path) -> Header | None:
    """A checkpoint's header from its first bytes alone (no tensor is read, no torch imported); None
    when the file is missing, damaged or not a checkpoint."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < HEADER_LIMIT:
                return None
            meta = json.loads(json.loads(f.read(size))["__metadata__"]["gancli"])
        if not isinstance(meta, dict) or meta.get("kind") != CHECKPOINT_KIND:
            return None
        return _parse_header(meta, str(path))
    except (OSError, ValueError, KeyError, TypeError, GancliError):
        return None


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.`, with the prefix stripped (e.g. a module's state_dict)."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _rank_key(name: str, rank: int) -> str:
    """A rank's global generator state: rank 0's under the one-process name."""
    return f"rng.{name}" if rank == 0 else f"rng.{name}.rank{rank}"


def _flatten_optimizer(prefix: str, state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict -> tensors named `prefix.<param>.<key>` plus a JSON-able rest."""
    import torch

    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in _prefixed(tensors, prefix).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in rest["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    if not isinstance(rest["param_groups"], list):
        raise ValueError("param_groups is not a list")
    return {"state": state, "param_groups": rest["param_groups"]}


def decode_checkpoint(raw: bytes, origin: str) -> GanCheckpoint:
    """The record of a checkpoint's bytes; anything damaged or forged is a GancliError naming `origin`.
    The networks' shapes are checked against the config where they are built (inference.networks)."""
    import torch

    tensors, meta = decode(raw, origin, CHECKPOINT_KIND)
    header = _parse_header(meta, origin)
    optimizers, rngs, rank_rngs, error = None, {"data": None, "noise": None}, [], None
    try:
        optimizers = {net: _unflatten_optimizer(f"opt.{net}", tensors, meta["optimizers"][net]) for net in OPTIMIZED}
        rngs = {"data": tensors["rng.data"], "noise": tensors["rng.noise"]}
        ranks = max(1, header.progress.world_size, *(int(k.rsplit("rank", 1)[1]) + 1 for k in tensors if ".rank" in k))
        rank_rngs = [{name: tensors[_rank_key(name, rank)] for name in ("torch", "cuda") if _rank_key(name, rank) in tensors}
                     for rank in range(ranks)]
        if any(t.dtype != torch.uint8 or t.ndim != 1 for t in [*rngs.values(), *(t for r in rank_rngs for t in r.values())]):
            raise ValueError("a generator state is not a uint8 vector")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        optimizers, rngs, rank_rngs, error = None, {"data": None, "noise": None}, [], _unreadable(origin, e).message
    G_ema = _prefixed(tensors, "G_ema") or None
    return GanCheckpoint(header.config, _prefixed(tensors, "G"), _prefixed(tensors, "D"), G_ema, optimizers,
                         rngs["data"], rngs["noise"], rank_rngs, header.progress, header.parent, header.calibration, error)


def read_checkpoint(path: Path | str) -> GanCheckpoint:
    """The record of a checkpoint file (runs.resolve_checkpoint finds a run folder's)."""
    path = _existing(path)
    return decode_checkpoint(path.read_bytes(), str(path))


def encode_checkpoint(record: GanCheckpoint) -> bytes:
    tensors = {f"{net}.{k}": v for net in NETWORKS for k, v in (getattr(record, net) or {}).items()}
    progress = {f.name: getattr(record.progress, f.name) for f in fields(Progress)}
    meta = {"kind": CHECKPOINT_KIND, "config": record.config.to_dict(), **progress, "parent": record.parent}
    if record.training_error is None:  # a copy of a checkpoint without a readable training state has none either
        meta["optimizers"] = {}
        for net in OPTIMIZED:
            flat, meta["optimizers"][net] = _flatten_optimizer(f"opt.{net}", record.optimizers[net])
            tensors |= flat
        tensors |= {"rng.data": record.data_rng, "rng.noise": record.noise_rng}
        tensors |= {_rank_key(name, rank): state for rank, states in enumerate(record.rank_rngs) for name, state in states.items()}
    if record.calibration is not None:
        meta["calibration"] = record.calibration
    return encode({k: v.cpu() for k, v in tensors.items()}, meta)


def write_checkpoint(path: Path, record: GanCheckpoint) -> None:
    atomic_write(path, encode_checkpoint(record))
