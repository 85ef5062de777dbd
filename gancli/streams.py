"""The samples stream (design note section 4): one safetensors blob of kind "samples".

`images` uint8 [N, C, H, W] (required), `z` float32 [N, z_dim], `score` float32 [N] and `labels`
int64 [N] (optional: the class each image was drawn for, or a dataset's labels); provenance (source
checkpoint, seed, class names, ...) in the metadata.
Writers take `-` (stdout), a `.safetensors` path, or a new or empty folder (one PNG per image);
pictures of them (a grid, an animation) are single PNG or GIF files, written atomically.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

from gancli.checkpoint import atomic_write, decode, encode
from gancli.errors import GancliError

SAMPLES_FILE = ".safetensors"
PICTURES = (".png", ".gif")  # a grid, an animation: what `gan interpolate -o` also writes


@dataclass
class Samples:
    images: torch.Tensor
    z: torch.Tensor | None = None
    score: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def select(self, index: torch.Tensor) -> Samples:
        pick = lambda t: None if t is None else t[index]
        return Samples(self.images[index], pick(self.z), pick(self.score), dict(self.meta), pick(self.labels))


def encode_samples(samples: Samples) -> bytes:
    tensors = {"images": samples.images}
    if samples.z is not None:
        tensors["z"] = samples.z.float()
    if samples.score is not None:
        tensors["score"] = samples.score.float()
    if samples.labels is not None:
        tensors["labels"] = samples.labels.long()
    return encode(tensors, {**samples.meta, "kind": "samples"})


def read_samples(raw: bytes, origin: str) -> Samples:
    tensors, meta = decode(raw, origin, "samples")
    images, z, score, labels = (tensors.get(k) for k in ("images", "z", "score", "labels"))
    if images is None or images.dtype != torch.uint8 or images.ndim != 4:
        raise GancliError(f"{origin}: a samples stream needs `images` as uint8 [N, C, H, W]")
    if z is not None and (z.dtype != torch.float32 or z.ndim != 2 or len(z) != len(images)):
        raise GancliError(f"{origin}: `z` must be float32 [N, z_dim] with one row per image")
    if score is not None and (score.dtype != torch.float32 or tuple(score.shape) != (len(images),)):
        raise GancliError(f"{origin}: `score` must be float32 [N], one per image")
    if labels is not None and (labels.dtype != torch.int64 or tuple(labels.shape) != (len(images),) or
                               (len(labels) and labels.min() < 0)):
        raise GancliError(f"{origin}: `labels` must be int64 [N], one class index (>= 0) per image")
    meta.pop("kind", None)
    return Samples(images, z, score, meta, labels)


def to_pil(image: torch.Tensor):
    """uint8 [C, H, W] -> a PIL image: grayscale for one channel, RGB for three."""
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def tile(images: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """uint8 [N, C, H, W] -> one uint8 [C, H', W'] picture, nrow images a row, each framed by `padding`
    black pixels: torchvision's make_grid layout, without importing torchvision (1.6 s a command)."""
    n, channels, height, width = images.shape
    columns = min(nrow, n)
    rows = -(-n // columns)
    picture = torch.zeros(channels, rows * (height + padding) + padding, columns * (width + padding) + padding,
                          dtype=torch.uint8)
    for i, image in enumerate(images):
        top, left = (padding + (height + padding) * (i // columns), padding + (width + padding) * (i % columns))
        picture[:, top:top + height, left:left + width] = image
    return picture


def _save_picture(path: Path | str, picture, format: str, **options) -> None:
    """A PIL picture encoded in memory, then written with atomic_write: a failure (a full disk) is its
    one-line GancliError and leaves no partial file."""
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    atomic_write(Path(path), buffer.getvalue())


def grid_images(samples: Samples, per_row: int = 8, rows: int = 8) -> torch.Tensor:
    """A grid's images, per_row a row: the first rows x per_row; for labelled samples, each class in class
    order on rows of its own (rows shared out among the classes, at least one each), padded with black
    where a class has fewer images."""
    if samples.labels is None:
        return samples.images[:rows * per_row]
    present = samples.labels.unique()
    each = per_row * max(1, rows // len(present))
    blocks = []
    for c in present:
        picked = samples.images[samples.labels == c][:each]
        blocks.append(torch.cat([picked, picked.new_zeros(-len(picked) % per_row, *picked.shape[1:])]))
    return torch.cat(blocks)


def save_png_grid(images: torch.Tensor, path: Path | str, nrow: int = 8) -> None:
    """uint8 [N, C, H, W] -> one PNG, nrow images a row (tile)."""
    _save_picture(path, to_pil(tile(images, nrow)), "PNG")


def save_animation(pictures: list, path: Path | str, frame_ms: int) -> None:
    """PIL pictures -> an animated GIF, one frame each, frame_ms apart, looping."""
    first, *rest = [picture.convert("P") for picture in pictures]
    _save_picture(path, first, "GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0)


def save_gif(frames: torch.Tensor, path: Path | str) -> None:
    """uint8 [pairs, steps, C, H, W] -> an animated GIF: one frame per step, pairs side by side, there and back."""
    steps = frames.shape[1]
    order = list(range(steps)) + list(range(steps - 2, 0, -1))
    save_animation([to_pil(tile(frames[:, t], nrow=frames.shape[0])) for t in order], path, frame_ms=80)


def class_folder(name: str) -> str:
    """A class's subfolder name: its name, a path separator made a dash (Fashion-MNIST's T-shirt/top)."""
    return name.replace("/", "-").replace(os.sep, "-")


def write_png_folder(samples: Samples, folder: Path) -> None:
    """One PNG per image, numbered in order; labelled samples' in a subfolder per class, named for it, which
    reads back as the same labels (data.py's class folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(samples) - 1)))
    names = samples.meta.get("classes")
    for i, image in enumerate(samples.images):
        where = folder if samples.labels is None or not names else folder / class_folder(names[samples.labels[i]])
        where.mkdir(exist_ok=True)
        to_pil(image).save(where / f"{i:0{width}d}.png")


def check_picture(path: Path | str, option: str, formats: tuple[str, ...] = PICTURES) -> None:
    """Refuse, before any work, a picture file (a grid, an animation) that could not be written: of
    another format, in a folder that does not exist, or a folder itself."""
    path = Path(path)
    if path.suffix.lower() not in formats:
        raise GancliError(f"{option} {path}: writes {' or '.join(formats)} files", f"e.g. {option} grid{formats[0]}")
    if not path.parent.is_dir():
        raise GancliError(f"{option} {path}: no folder {path.parent}", "create it first")
    if path.is_dir():
        raise GancliError(f"{option} {path} is a folder", "name a file in it")


def check_destination(dest: str) -> None:
    """Refuse, before any work, a destination that write_samples could not write, or whose images would
    mix with others: a folder that holds files (they would be counted with these by `gan score DIR`), or a
    new name with an extension no writer knows (samples.npz), which would else become a folder of PNGs."""
    path = Path(dest)
    if dest == "-":
        return
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing != path and not existing.is_dir():
        raise GancliError(f"cannot write {dest}: {existing} is a file, not a folder")
    if path.is_dir():
        if dest.endswith(SAMPLES_FILE):
            raise GancliError(f"{dest} is a folder", f"name a new {SAMPLES_FILE} file")
        try:
            held = next(path.iterdir(), None)
        except OSError as e:
            raise GancliError(f"cannot read folder {dest}: {e.strerror}") from None
        if held is not None:
            raise GancliError(f"{dest} already holds files: the images written would mix with them",
                              "name an empty or new folder")
    elif dest.endswith(SAMPLES_FILE):
        return
    elif path.exists():
        raise GancliError(f"{dest} exists and is not a folder", f"name a folder, a {SAMPLES_FILE} file, or -")
    elif path.suffix and not dest.endswith(os.sep):  # a name ending in / is a folder, whatever its dots
        raise GancliError(f"{dest}: images are written to -, a {SAMPLES_FILE} file or a folder of PNGs, "
                          f"no {path.suffix} files", f"name a folder such as {path.stem}/, or {path.stem}{SAMPLES_FILE}")


def write_samples(samples: Samples, dest: str, stdout: BinaryIO | None = None) -> None:
    """`-`: the stream on stdout; `*.safetensors`: a file, atomically; anything else: a PNG folder."""
    check_destination(dest)
    if dest == "-":
        out = stdout or sys.stdout.buffer
        out.write(encode_samples(samples))
        out.flush()
    elif dest.endswith(SAMPLES_FILE):
        atomic_write(Path(dest), encode_samples(samples))
    else:
        try:
            write_png_folder(samples, Path(dest))
        except OSError as e:
            raise GancliError(f"cannot write PNG files to {dest}: {e.strerror}") from None
