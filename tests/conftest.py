import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.config import TrainConfig, make_config
from gancli.state import new_state, save_state
from gancli.streams import Samples, write_samples
from gancli.training import train

# Networks small enough that an epoch takes milliseconds, on 8x8 synthetic images:
# the same sizes as TrainConfig fields (library tests) and as options (CLI tests).
TINY_FIELDS = dict(z_dim=8, g_hidden=(32,), d_hidden=(32,), batch_size=16)
TINY = [arg for field, value in TINY_FIELDS.items()
        for arg in (f"--{field.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, tuple) else str(value))]
TINY += ["--device", "cpu"]


def tiny_config(objective: str = "vanilla", **overrides) -> TrainConfig:
    """A config of the tiny networks for 8x8 images (one epoch unless told)."""
    return make_config(objective, **{**TINY_FIELDS, "image_shape": (1, 8, 8), "epochs": 1, **overrides})


def synthetic_images(n: int = 128, side: int = 8, seed: int = 0) -> torch.Tensor:
    """Bright squares at random places on black: a dataset with structure, in uint8 [N, 1, side, side]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    corners = torch.randint(0, side - 3, (n, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, 0, r:r + 3, c:c + 3] = 255
    return images


def log_without_timings(run) -> list[dict]:
    """A run's log.jsonl records without the fields that measure the machine."""
    from gancli.runs import read_log
    from gancli.training import TIMING_FIELDS

    records = read_log(run)
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def assert_same_checkpoint(a, b):
    """Every tensor of two checkpoints equal: dtype, shape and value."""
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not (ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and (ta[k] == tb[k]).all())]
    assert different == []


def write_idx(folder, stem, array, gz=True):
    """An IDX file of unsigned bytes, as MNIST ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
    else:
        (folder / stem).write_bytes(raw)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    state = train(new_state(tiny_config(epochs=2)), synthetic_images(), folder)
    # Two epochs leave the discriminator sure that every fake is fake; shift its output so that
    # about half of the fakes clear confidence 0.6, as with a generator that has caught up.
    with torch.no_grad():
        z = torch.randn(512, state.config.z_dim)
        v = state.D(state.generator(z))  # the generator sampling uses: the moving average
        state.D.net[-1].bias += torch.logit(torch.tensor(0.6)) - v.median()
    save_state(folder / "checkpoint.safetensors", state)
    save_state(folder / "wgan.safetensors", new_state(tiny_config("wgan")))
    return folder


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    path = tmp_path / "tiny.safetensors"
    write_samples(Samples(synthetic_images()), str(path))
    return path


def gan_env(cwd, **extra) -> dict:
    """The environment of a user's shell in `cwd`: no GANCLI_* settings of ours, `gan` on the PATH,
    a feature cache of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANCLI_")}
    env |= {"PATH": os.path.dirname(sys.executable) + os.pathsep + env["PATH"], "GANCLI_CACHE": str(Path(cwd) / "cache")}
    return env | extra


def run_gan(*args, cwd, env=None, input=None, check=None):
    """`gan ARGS` as a subprocess, like a user's shell would run it."""
    result = subprocess.run([sys.executable, "-m", "gancli", *map(str, args)], cwd=cwd, env=gan_env(cwd, **(env or {})),
                            input=input, capture_output=True, timeout=300)
    if check is not None:
        assert result.returncode == check, result.stderr.decode()
    return result


def shell(command: str, cwd, env=None):
    """A bash pipeline (pipefail on) with `gan` on the PATH."""
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=gan_env(cwd, **(env or {})),
                          capture_output=True, timeout=600)


@pytest.fixture
def gan(tmp_path):
    return lambda *args, **kw: run_gan(*args, cwd=tmp_path, **kw)


@pytest.fixture
def user_shell(tmp_path, monkeypatch) -> Path:
    """This process in a user's shell in tmp_path: its GANCLI_* settings those of gan_env, the one scrub."""
    for key in [k for k in os.environ if k.startswith("GANCLI_")]:
        monkeypatch.delenv(key)
    for key, value in gan_env(tmp_path).items():
        if key.startswith("GANCLI_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli(user_shell):
    """`gan ARGS` in this process (Typer's CliRunner), from tmp_path: for option and error cases,
    which need no subprocess's 2 s of imports. Returns the result with .exit_code, .stdout, .stderr."""
    from typer.testing import CliRunner

    from gancli.cli import app

    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(app, [str(a) for a in args], input=input)
