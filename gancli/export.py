"""A checkpoint's generator for code without gancli (`gan export`): a TorchScript module, an ONNX graph,
the generator's own state dict, or the course's `G.pth`.

Every format maps z float32 [N, z_dim] (and a conditional model's class indices int64 [N]) to images
in [-1, 1], float32 [N, C, H, W]: what `gan sample` rounds to uint8 as (x + 1) * 127.5. The moving
average is exported where the run kept one, as `gan sample` draws from it, unless asked for the raw
weights. The config and the provenance (checkpoint, epoch, generator, gancli's version) travel with
the file where its format has room: TorchScript's extra files, ONNX's metadata, safetensors' metadata.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from gancli._version import __version__
from gancli.checkpoint import atomic_write
from gancli.config import EXPORT_FORMATS
from gancli.errors import GancliError
from gancli.inference import Opened

# a file's suffix -> the format it means; `course` (also a .pth) is asked for by name only
SUFFIX_FORMATS = {".pt": "torchscript", ".onnx": "onnx", ".pth": "state-dict", ".safetensors": "state-dict"}
# the course's Generator (its generate.py loads checkpoints/G.pth): fc1..fc4 over gancli's MLP layers
COURSE_KEYS = {"net.0": "fc1", "net.2": "fc2", "net.4": "fc3", "net.6": "fc4"}
COURSE_SHAPE = {"z_dim": 100, "g_hidden": (256, 512, 1024), "image_shape": (1, 28, 28)}


# each format's file name when -o is not given
DEFAULT_OUTPUTS = {"torchscript": "generator.pt", "onnx": "generator.onnx", "state-dict": "generator.safetensors",
                   "course": "G.pth"}


def export_target(output: Path | None, asked: str | None) -> tuple[Path, str]:
    """Where and in which format to write: `asked` (its default file name without `output`), else the format
    `output`'s suffix means (TorchScript without either). A name whose suffix means another format is refused."""
    if asked is not None and asked not in EXPORT_FORMATS:
        raise GancliError(f"unknown --format {asked!r}", f"choose one of {', '.join(EXPORT_FORMATS)}")
    if output is None:
        asked = asked or "torchscript"
        return Path(DEFAULT_OUTPUTS[asked]), asked
    suffix = output.suffix.lower()
    if asked is not None:
        fits = suffix == ".pth" if asked == "course" else SUFFIX_FORMATS.get(suffix, asked) == asked
        if not fits:
            wanted = [".pth"] if asked == "course" else [s for s, f in SUFFIX_FORMATS.items() if f == asked]
            raise GancliError(f"-o {output}: a {asked} file is named {' or '.join(wanted)}",
                              f"e.g. -o {DEFAULT_OUTPUTS[asked]}")
        return output, asked
    found = SUFFIX_FORMATS.get(suffix)
    if found is None:
        raise GancliError(f"-o {output}: no format has the suffix {output.suffix or '(none)'}",
                          "name a .pt (TorchScript), .onnx, .pth or .safetensors (state dict) file, or give --format")
    return output, found


class Images(nn.Module):
    """G's forward as an exported module: z (and labels) -> float32 images in [-1, 1]."""

    def __init__(self, G: nn.Module, conditional: bool):
        super().__init__()
        self.G, self.conditional = G, conditional

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.G(z, labels if self.conditional else None).float()


def provenance(opened: Opened) -> dict:
    return {"source": str(opened.path), "epoch": opened.record.progress.epoch, "generator": opened.generator_name,
            "gancli_version": __version__, "config": opened.config.to_dict()}


def _example(opened: Opened) -> tuple[torch.Tensor, ...]:
    """Example inputs: two latents (and classes), on the CPU, where exports are traced."""
    z = torch.zeros(2, opened.config.z_dim)
    return (z, torch.zeros(2, dtype=torch.int64)) if opened.config.conditional else (z,)


def _cpu_module(opened: Opened) -> Images:
    return Images(opened.G.cpu().eval(), opened.config.conditional).eval()


def torchscript_bytes(opened: Opened, output: Path) -> bytes:
    """A traced module that `torch.jit.load` alone loads, with the config and provenance as extra files."""
    module, example = _cpu_module(opened), _example(opened)
    buffer = io.BytesIO()
    # torch deprecates TorchScript for torch.export, whose files need torch's Python to run; a .pt that any
    # libtorch (C++, torch-fidelity) loads is still TorchScript's, so its warnings say nothing to the user
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={"gancli.json": json.dumps(provenance(opened))})
    return buffer.getvalue()


def onnx_bytes(opened: Opened, output: Path) -> bytes:
    """The same graph in ONNX (torch's exporter), the batch dynamic, checked with onnx.checker; the
    provenance in its metadata. A conditional model's `labels` must be its class indices (0 to
    n_classes - 1, `classes` in the metadata's config): ONNX runtimes do not check them."""
    try:
        import onnx
    except ImportError:
        raise GancliError("the ONNX format needs the `export` extra", 'pip install "gancli[export]"') from None
    import tempfile

    module, example = _cpu_module(opened), _example(opened)
    batch = torch.export.Dim("batch")
    names = ["z", "labels"][:len(example)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generator.onnx"
        try:
            with warnings.catch_warnings():  # that z and labels share the batch axis is what is meant
                warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
                torch.onnx.export(module, example, str(path), input_names=names, output_names=["images"],
                                  dynamic_shapes=tuple({0: batch} for _ in example), dynamo=True, verbose=False,
                                  external_data=False)
        except ImportError as e:  # torch's exporter needs onnxscript
            raise GancliError(f"the ONNX exporter could not start: {e}", 'pip install "gancli[export]"') from None
        model = onnx.load(str(path))
    onnx.checker.check_model(model)
    onnx.helper.set_model_props(model, {"gancli": json.dumps(provenance(opened))})
    return model.SerializeToString()


def state_dict_bytes(opened: Opened, output: Path) -> bytes:
    """G's own state dict: safetensors (the provenance in its metadata) or `.pth` (torch.save of tensors
    alone, which `torch.load(..., weights_only=True)` opens)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in opened.G.state_dict().items()}
    if output.suffix.lower() == ".safetensors":
        from safetensors.torch import save

        return save(tensors, metadata={"gancli": json.dumps(provenance(opened))})
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def course_bytes(opened: Opened, output: Path) -> bytes:
    """The course's `G.pth`: its Generator's state dict (fc1 100->256, fc2 256->512, fc3 512->1024,
    fc4 1024->784), for the course MLP alone."""
    config = opened.config
    shape = {k: tuple(v) if isinstance(v, tuple) else v for k, v in
             (("z_dim", config.z_dim), ("g_hidden", config.g_hidden), ("image_shape", config.image_shape))}
    if config.arch != "mlp" or shape != COURSE_SHAPE or config.conditional:
        what = "an MLP with z " + f"{config.z_dim}, hidden {','.join(map(str, config.g_hidden))}" if config.arch == "mlp" else \
            f"a {config.arch}"
        raise GancliError(f"--format course writes the course's MLP generator (z 100, hidden 256,512,1024, 28x28); this "
                          f"checkpoint's is {what}, images {'x'.join(map(str, config.image_shape))}"
                          f"{', conditional' if config.conditional else ''}",
                          "export it as --format torchscript, onnx or state-dict")
    weights = opened.G.state_dict()
    course = {f"{COURSE_KEYS[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v.detach().cpu().contiguous()
              for k, v in weights.items()}
    buffer = io.BytesIO()
    torch.save(course, buffer)
    return buffer.getvalue()


WRITERS = {"torchscript": torchscript_bytes, "onnx": onnx_bytes, "state-dict": state_dict_bytes, "course": course_bytes}


def _gancli_kind(path: Path) -> str | None:
    """The `kind` in a safetensors file's gancli metadata (a checkpoint's, a samples stream's), else None:
    a file of another format, or an earlier export (whose metadata is its provenance)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size)) if 0 < size < 100_000_000 else {}
        meta = json.loads(header.get("__metadata__", {}).get("gancli", "null"))
    except (OSError, ValueError, AttributeError):
        return None
    return meta.get("kind") if isinstance(meta, dict) else None


def check_target(output: Path, source: Path) -> None:
    """Refuse to write over the checkpoint exported, or over any other gancli checkpoint or samples file."""
    if output.exists() and output.resolve() == source.resolve():
        raise GancliError(f"-o {output} is the checkpoint exported: it would be replaced", "name another file")
    if output.is_file() and (kind := _gancli_kind(output)) is not None:
        raise GancliError(f"-o {output} is a gancli {'checkpoint' if kind == 'gan' else kind} file: an export does not "
                          "replace it", "name another file")


def export(opened: Opened, output: Path, format: str) -> None:
    """Write `opened`'s generator to `output` (atomically) in `format` (export_target chose both)."""
    check_target(output, opened.path)
    atomic_write(output, WRITERS[format](opened, output))
