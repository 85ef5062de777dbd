import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.streams import Samples, write_samples

# Networks small enough that an epoch takes milliseconds.
TINY = ["--z-dim", "8", "--g-hidden", "32", "--d-hidden", "32", "--batch-size", "16", "--device", "cpu"]


def synthetic_images(n: int = 128, side: int = 8, seed: int = 0) -> torch.Tensor:
    """Bright squares at random places on black: a dataset with structure, in uint8 [N, 1, side, side]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    corners = torch.randint(0, side - 3, (n, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, 0, r:r + 3, c:c + 3] = 255
    return images


def write_idx(folder, stem, array, gz=True):
    """An IDX file of unsigned bytes, as MNIST ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
    else:
        (folder / stem).write_bytes(raw)


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    path = tmp_path / "tiny.safetensors"
    write_samples(Samples(synthetic_images()), str(path))
    return path


def run_gan(*args, cwd, env=None, input=None, check=None):
    """`gan ARGS` as a subprocess, like a user's shell would run it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GANCLI_")}
    full_env |= {"GANCLI_CACHE": str(Path(cwd) / "cache"), **(env or {})}
    result = subprocess.run([sys.executable, "-m", "gancli", *map(str, args)], cwd=cwd, env=full_env,
                            input=input, capture_output=True, timeout=300)
    if check is not None:
        assert result.returncode == check, result.stderr.decode()
    return result


@pytest.fixture
def gan(tmp_path):
    return lambda *args, **kw: run_gan(*args, cwd=tmp_path, **kw)
