"""Safetensors files with gancli metadata: checkpoints (kind "gan") and samples (kind "samples").

Layout of a checkpoint (design note section 3): tensors `G.*`, `D.*`, optimizer state
`opt.G.*` / `opt.D.*`, RNG states `rng.*` (uint8), and metadata {"gancli": "<json>"}.
No pickle anywhere; writes are atomic.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from gancli import __version__
from gancli.errors import GancliError

SCHEMA = 1


def encode(tensors: dict[str, torch.Tensor], meta: dict) -> bytes:
    meta = {"schema": SCHEMA, "version": __version__, **meta}
    return st_save({k: v.detach().contiguous() for k, v in tensors.items()}, metadata={"gancli": json.dumps(meta)})


def decode(raw: bytes, origin: str, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and gancli metadata of a blob, checked to be of `kind`."""
    if len(raw) == 0:
        raise GancliError(f"{origin} is empty", "expected a gancli .safetensors file")
    try:
        (header_len,) = struct.unpack("<Q", raw[:8])
        if header_len > len(raw) - 8:
            raise ValueError("header runs past the end of the file")
        header = json.loads(raw[8:8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("gancli", "null"))
        tensors = st_load(raw)
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
                          "pass a checkpoint (runs/NAME/checkpoint.safetensors)" if kind == "gan"
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


def read_file(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise GancliError(f"no such file: {path}", "train first, or pass runs/NAME/checkpoint.safetensors")
    return decode(path.read_bytes(), str(path), kind)


def flatten_optimizer(prefix: str, state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict -> tensors named `prefix.<param>.<key>` plus a JSON-able rest."""
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            index, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for name, value in rest["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.`, with the prefix stripped (e.g. a module's state_dict)."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
