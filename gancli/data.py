"""Image sources -> uint8 tensors [N, C, H, W].

A source is a dataset name (`mnist`, `mnist:test`, `fashion-mnist`, ...), a folder of PNG/JPEG
images (or of one subfolder of them per class, labelled by sorted name), a `.safetensors` samples
file, or `-` (a samples stream on stdin); any of them followed by a slice, `SOURCE[:N]` or
`SOURCE[A:B]`, is those of its images, in its own order.
Datasets resolve from a local folder (`--data-dir` / GANCLI_DATA), then the cache folder
(GANCLI_CACHE, default ~/.cache/gancli), then a torchvision download into the cache. In either
folder DIR, a dataset NAME's files are those in DIR/NAME/ (or torchvision's DIR/MNIST/raw/,
DIR/FashionMNIST/raw/, ...), or flat in DIR itself only where their content is known to be NAME's
(FINGERPRINTS): MNIST, Fashion-MNIST and KMNIST share file names, and a flat folder does not say
which it holds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch

from gancli.errors import GancliError
from gancli.streams import Samples, read_samples

# name -> (torchvision class name, folder name torchvision uses)
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
# the classes of a dataset gancli ships no classifier of (config.CLASSIFIER_CLASSES has the others'):
# KMNIST's ten hiragana, romanised as its paper names them
DATASET_CLASSES = {"kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


SLICE = re.compile(r"(?P<source>.+)\[(?P<start>\d*):(?P<stop>\d*)\]")


def split_slice(source: str) -> tuple[str, slice | None]:
    """'mnist[:5000]' -> ('mnist', slice(None, 5000)): the first 5,000 images; a path that exists as
    written is never taken for a slice."""
    found = SLICE.fullmatch(source)
    if found is None or Path(source).exists():
        return source, None
    start, stop = (int(found[key]) if found[key] else None for key in ("start", "stop"))
    if start is not None and stop is not None and stop <= start:
        raise GancliError(f"{source}: the slice [{start}:{stop}] is empty", "write [A:B] with B > A, or [:N]")
    return found["source"], slice(start, stop)


def cache_dir() -> Path:
    return Path(os.environ.get("GANCLI_CACHE") or Path.home() / ".cache" / "gancli")


def parse_dataset_name(source: str) -> tuple[str, str] | None:
    """'mnist' -> ('mnist', 'train'), 'mnist:test' -> ('mnist', 'test'); None if not a dataset name."""
    name, _, split = source.partition(":")
    if name not in DATASETS:
        return None
    split = split or "train"
    if split not in SPLIT_PREFIX:
        raise GancliError(f"unknown split {split!r} in {source!r}", "use :train or :test")
    return name, split


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise GancliError(f"cannot read {path}: {e}", "the file may be truncated; fetch it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise GancliError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise GancliError(f"{path} holds {data.size} values, its header says {dims}", "the file is truncated")
    return data.reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


# The head of each official file, decompressed: enough to tell the datasets apart, cheap to read.
FINGERPRINT_BYTES = 4096
# name -> {file stem -> idx_fingerprint of the official file}; KMNIST's files were not at hand, so a
# KMNIST folder is only ever read from DIR/kmnist/ or DIR/KMNIST/raw/
FINGERPRINTS = {
    "mnist": {"train-images-idx3-ubyte": "3578fc65cebc6314", "train-labels-idx1-ubyte": "026c1f9224bc82a8",
              "t10k-images-idx3-ubyte": "52a0245ca77e0d85", "t10k-labels-idx1-ubyte": "465726f2d32f64df"},
    "fashion-mnist": {"train-images-idx3-ubyte": "73fda24d90a4689a", "train-labels-idx1-ubyte": "f99483a0d2b949c8",
                      "t10k-images-idx3-ubyte": "ca71e055028bc426", "t10k-labels-idx1-ubyte": "8999b541bcbea5ef"},
}


def idx_fingerprint(path: Path) -> str:
    """sha256(first FINGERPRINT_BYTES bytes of the decompressed file: the IDX header and the first
    pixels or labels), its first 16 hex digits; the same for a file gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(FINGERPRINT_BYTES)
    except (OSError, EOFError) as e:
        raise GancliError(f"cannot read {path}: {e}", "the file may be truncated; fetch it again") from None
    return hashlib.sha256(head).hexdigest()[:16]


def _find_idx(root: Path, name: str, stem: str) -> Path | None:
    """NAME's file `stem` in root/NAME/ or torchvision's root/<Class>/raw/, else flat in root where
    its fingerprint is the official file's."""
    for folder in (root / name, root / DATASETS[name] / "raw"):
        if found := _idx_file(folder, stem):
            return found
    flat = _idx_file(root, stem)
    return flat if flat and idx_fingerprint(flat) == FINGERPRINTS.get(name, {}).get(stem) else None


def _foreign_note(root: Path, name: str, stem: str) -> str:
    """' (holds IDX files that are not NAME's)' where root's flat files are another dataset's, else ''."""
    return f" (holds IDX files that are not {name}'s)" if _idx_file(root, stem) else ""


def _download(name: str) -> str | None:
    """Try torchvision's download into the cache; the reason it failed, or None."""
    try:
        import torchvision.datasets as tvd

        getattr(tvd, DATASETS[name])(root=str(cache_dir()), download=True)
        return None
    except Exception as e:  # torchvision raises many kinds when offline
        return str(e).splitlines()[0] if str(e) else type(e).__name__


def resolve_idx(name: str, split: str, kind: str, data_dir: str | None = None) -> Path:
    """Path of the IDX file of `kind` ('images' or 'labels'), in resolution order."""
    stem = f"{SPLIT_PREFIX[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    local = data_dir or os.environ.get("GANCLI_DATA")
    if local and (found := _find_idx(Path(local), name, stem)):
        return found
    if found := _find_idx(cache_dir(), name, stem):
        return found
    failure = _download(name)
    if failure is None and (found := _find_idx(cache_dir(), name, stem)):
        return found
    cache_note = _foreign_note(cache_dir(), name, stem)
    # where the files would be found: the folder given, else the cache where it holds another dataset's
    folder = Path(local) if local else cache_dir() if cache_note else None
    raise GancliError(
        f"no {name} data found: local folder {local or '(none: --data-dir and GANCLI_DATA unset)'}"
        f"{_foreign_note(Path(local), name, stem) if local else ''}, cache folder {cache_dir()}{cache_note}, "
        f"torchvision download failed: {failure or 'files missing after download'}",
        f"put {name}'s {stem}.gz in {folder / name}/" if folder else
        f"put {name}'s {stem}.gz in DIR/{name}/ and pass --data-dir DIR or set GANCLI_DATA",
    )


def load_dataset(name: str, split: str = "train", data_dir: str | None = None) -> torch.Tensor:
    images = read_idx(resolve_idx(name, split, "images", data_dir))
    return torch.from_numpy(images.copy()).unsqueeze(1)


def load_labels(name: str, split: str = "train", data_dir: str | None = None) -> torch.Tensor:
    return torch.from_numpy(read_idx(resolve_idx(name, split, "labels", data_dir)).astype(np.int64))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list[Path]:
    """A folder's subfolders, by sorted name: its classes (torchvision's ImageFolder convention), when it has
    any that hold images; an empty one among them is an error, as it would shift the classes after it."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    empty = [p.name for p in subfolders if not _image_files(p)]
    if empty and len(empty) < len(subfolders):
        raise GancliError(f"{folder}'s class folder {empty[0]} holds no images", "remove it or add its images")
    return subfolders if not empty else []


def load_folder(folder: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    image_files = _image_files(folder)
    if not image_files:
        raise GancliError(f"no images in folder {folder} ({len(files)} other files)", "expected PNG or JPEG files")
    arrays = []
    for path in image_files:
        try:
            with Image.open(path) as im:
                arrays.append(np.asarray(im.convert("L") if im.mode in ("L", "1", "P", "I", "I;16") else im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as e:
            raise GancliError(f"{path} is not a readable image: {e}") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise GancliError(f"images in {folder} differ in size or channels: {sorted(shapes)[:3]}", "resize them to one size")
    stacked = np.stack(arrays)
    tensor = torch.from_numpy(stacked)
    return tensor.unsqueeze(1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2).contiguous()


def _load_class_folders(folder: Path, classes: list[Path]) -> Samples:
    """The images of the class subfolders, labelled with their class's index (their names in meta["classes"]),
    interleaved: the first image of each class, then the second of each, ..., so that a slice or the first N
    images (`gan score -n`, `--ref DIR -n`) hold every class as evenly as the folder allows."""
    parts = [load_folder(c) for c in classes]
    if len({tuple(p.shape[1:]) for p in parts}) > 1:
        raise GancliError(f"the class folders of {folder} hold images of different sizes or channels", "resize them to one size")
    labels = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(parts)])
    rank = torch.cat([torch.arange(len(p)) for p in parts])  # an image's place within its class
    order = torch.argsort(rank * len(parts) + labels, stable=True)
    return Samples(torch.cat(parts)[order], meta={"source": str(folder), "classes": [c.name for c in classes]},
                   labels=labels[order])


def load_labelled(source: str, data_dir: str | None = None) -> Samples:
    """A source's images with their classes, `labels` int64 [N] and the class names in meta["classes"]:
    a dataset's images with its IDX label file (the names of its classifier's classes, else the label
    values), a folder of class subfolders (sorted names: torchvision's ImageFolder convention), or a
    samples file that carries labels and names; a source without labels is a GancliError."""
    from gancli.config import CLASSIFIER_CLASSES

    whole, part = split_slice(source)
    if dataset := parse_dataset_name(whole):
        images, labels = load_dataset(*dataset, data_dir=data_dir), load_labels(*dataset, data_dir=data_dir)
        if len(labels) != len(images):
            raise GancliError(f"{whole}: {len(images)} images but {len(labels)} labels", "fetch its label file again")
        names = CLASSIFIER_CLASSES.get(dataset[0]) or DATASET_CLASSES.get(dataset[0]) or \
            [str(i) for i in range(int(labels.max()) + 1)]
        samples = Samples(images, meta={"source": whole, "classes": list(names)}, labels=labels)
    else:
        samples = _load_whole(whole, data_dir)
        if samples.labels is None or not samples.meta.get("classes"):
            raise GancliError(f"{whole} has no class labels",
                              "use a dataset (mnist, fashion-mnist, ...), a folder of one subfolder per class, "
                              "or a samples file with labels")
    if int(samples.labels.max()) >= len(samples.meta["classes"]):
        raise GancliError(f"{whole}: a label is past its {len(samples.meta['classes'])} classes")
    return samples if part is None else _sliced(samples, source, whole, part)


def load_samples(source: str, data_dir: str | None = None) -> Samples:
    """Any image source (design note section 4) as Samples; provenance in `.meta`."""
    whole, part = split_slice(source)
    samples = _load_whole(whole, data_dir)
    return samples if part is None else _sliced(samples, source, whole, part)


def _sliced(samples: Samples, source: str, whole: str, part: slice) -> Samples:
    if (part.start or 0) >= len(samples):
        raise GancliError(f"{source}: {whole} holds {len(samples)} images", "slice within them")
    return samples.select(torch.arange(len(samples))[part])


def _load_whole(source: str, data_dir: str | None) -> Samples:
    if source == "-":
        if sys.stdin.isatty():
            raise GancliError("no input: stdin is a terminal", "pipe a samples stream in, or name a file, folder or dataset")
        return read_samples(sys.stdin.buffer.read(), "stdin")
    if dataset := parse_dataset_name(source):
        return Samples(load_dataset(*dataset, data_dir=data_dir), meta={"source": source})
    path = Path(source)
    if path.is_dir():
        if not _image_files(path) and (classes := _class_folders(path)):
            return _load_class_folders(path, classes)
        return Samples(load_folder(path), meta={"source": str(path)})
    if path.is_file():
        return read_samples(path.read_bytes(), str(path))
    raise GancliError(f"no such file, folder or dataset: {source!r}",
                      f"datasets: {', '.join(DATASETS)} (add :test for the test split, [:N] for the first N images)")


def load_images(source: str, data_dir: str | None = None) -> torch.Tensor:
    return load_samples(source, data_dir).images
