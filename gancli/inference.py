"""Opening a checkpoint for use: the one loader that sampling, interpolation, filtering, calibration
and scoring share (as stylegan2-ada's one network loader). It never imports the training loop.

`open_checkpoint` resolves the device once, reads the record (checkpoint.read_checkpoint), builds the
networks on the meta device and gives them the file's tensors (a forged config that claims huge
layers allocates nothing before its shapes are checked), and picks the generator: the moving
average when the run kept one (--ema), unless asked for the raw one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gancli.checkpoint import GanCheckpoint, read_checkpoint
from gancli.config import TrainConfig
from gancli.errors import GancliError
from gancli.models import build_models


def resolve_device(device: str) -> torch.device:
    """auto, cpu, cuda or cuda:N (the GPU torchrun gives a rank) as a torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise GancliError("--device cuda but no CUDA device is available", "use --device cpu or auto")
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise GancliError(f"unknown device {device!r}", "use auto, cpu or cuda")
    return torch.device(device)


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 autocast runs natively on `device`: a CPU with AVX-512 bf16 or AMX instructions.
    (oneDNN's own check, mkldnn._is_mkldnn_bf16_supported, also says yes to AVX-512 without them, where it
    emulates bf16.) A CPU without them emulates it: 22x slower than fp32 for the infogan net on an AVX2
    EPYC (docs/training.md). GPUs count as not native: gancli has timed its bf16 on CPUs only."""
    if torch.device(device).type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The numerics `--precision` asks for on `device`: auto is bf16 autocast where it runs natively
    (native_bf16), fp32 elsewhere; fp32 and bf16 are themselves."""
    return ("bf16" if native_bf16(device) else "fp32") if precision == "auto" else precision


def precision_warning(precision: str, device: torch.device | str) -> str | None:
    """What to tell a user who asked for bf16 where it is emulated, or None."""
    if precision != "bf16" or torch.device(device).type != "cpu" or native_bf16(device):
        return None
    return ("bf16 autocast on this CPU is emulated (no AVX-512 bf16 or AMX): far slower than fp32 (22x for the infogan "
            "net on an AVX2 CPU); --precision auto takes fp32 here")


def load_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], origin: str) -> None:
    """`net` (built on any device, meta included) takes `weights` as they are, after their names,
    shapes and dtypes were checked against its own."""
    expected = {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
    found = {k: (tuple(v.shape), v.dtype) for k, v in weights.items()}
    if expected != found:
        wrong = sorted(set(expected) ^ set(found)) or sorted(k for k in expected if expected[k] != found[k])
        raise GancliError(f"{origin}: weights do not match the architecture in its config (first mismatch: {wrong[0]})",
                          "the checkpoint is damaged or was edited")
    net.load_state_dict(weights, assign=True)


def networks(record: GanCheckpoint, origin: str, *, raw_generator: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D of a checkpoint, on the CPU, in training mode; G is the moving average when the
    checkpoint holds one, unless `raw_generator`."""
    with torch.device("meta"):
        G, D = build_models(record.config)
    load_weights(G, record.G if raw_generator or record.G_ema is None else record.G_ema, origin)
    load_weights(D, record.D, origin)
    return G, D


@dataclass(frozen=True)
class Opened:
    """A checkpoint ready to generate: its networks in eval mode on `device`, and what they came with."""

    path: Path
    config: TrainConfig
    G: torch.nn.Module
    D: torch.nn.Module
    device: torch.device
    averaged: bool  # G is the moving average of the generator's weights
    calibration: dict | None  # `gan calibrate`'s map, when the checkpoint holds one
    record: GanCheckpoint

    @property
    def generator_name(self) -> str:
        """How a calibration names the generator it was fitted on."""
        return "moving average" if self.averaged else "raw"


def open_checkpoint(path: Path | str, device: str = "auto", *, raw_generator: bool = False) -> Opened:
    """The checkpoint at `path` (a file: runs.resolve_checkpoint finds a run's) opened for inference."""
    path = Path(path)
    dev = resolve_device(device)
    record = read_checkpoint(path)
    G, D = networks(record, str(path), raw_generator=raw_generator)
    return Opened(path, record.config, G.to(dev).eval(), D.to(dev).eval(), dev,
                  record.G_ema is not None and not raw_generator, record.calibration, record)
