"""`gan export`: each format, loaded in a process that cannot import gancli, reproduces `gan sample`'s
images for the same latents; the course's G.pth loads into a copy of the course's Generator."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gancli.state import new_state
from gancli.streams import read_samples
from gancli.training import train
from tests.conftest import synthetic_images, tiny_config

# The subprocess: gancli made unimportable, the export loaded with torch (or onnxruntime) alone, run on
# the latents of `gan sample`'s stream, its images rounded to uint8 as gan sample rounds them.
LOADER = """
import sys
sys.modules["gancli"] = None  # any import of gancli fails: the file must stand alone
import torch
from safetensors.torch import load_file
kind, export, latents, out = sys.argv[1:5]
z = load_file(latents)["z"]
labels = load_file(latents).get("labels")
if kind == "torchscript":
    module = torch.jit.load(export)
    images = module(z) if labels is None else module(z, labels)
elif kind == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(export)
    feed = {"z": z.numpy()} | ({} if labels is None else {"labels": labels.numpy()})
    images = torch.from_numpy(session.run(None, feed)[0])
elif kind == "state-dict":
    from torch import nn
    weights = load_file(export) if export.endswith(".safetensors") else torch.load(export, weights_only=True)
    widths = [weights[f"net.{i}.weight"].shape for i in range(0, 7, 2) if f"net.{i}.weight" in weights]
    layers = []
    for n_out, n_in in widths:
        layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
    net = nn.Sequential(*layers[:-1], nn.Tanh())
    net.load_state_dict({k.removeprefix("net."): v for k, v in weights.items()})
    images = net(z).view(len(z), 1, 8, 8)
elif kind == "course":
    from torch import nn
    import torch.nn.functional as F

    class Generator(nn.Module):  # the course's, as its generate.py defines it
        def __init__(self, g_output_dim=784):
            super().__init__()
            self.fc1 = nn.Linear(100, 256)
            self.fc2 = nn.Linear(self.fc1.out_features, self.fc1.out_features * 2)
            self.fc3 = nn.Linear(self.fc2.out_features, self.fc2.out_features * 2)
            self.fc4 = nn.Linear(self.fc3.out_features, g_output_dim)

        def forward(self, x):
            x = F.leaky_relu(self.fc1(x), 0.2)
            x = F.leaky_relu(self.fc2(x), 0.2)
            x = F.leaky_relu(self.fc3(x), 0.2)
            return torch.tanh(self.fc4(x))

    G = Generator()
    G.load_state_dict(torch.load(export, weights_only=True))
    images = G(z).view(len(z), 1, 28, 28)
with torch.no_grad():
    uint8 = images.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
torch.save(uint8, out)
"""


def standalone(kind: str, export: Path, latents: Path, tmp_path: Path) -> torch.Tensor:
    out = tmp_path / f"{kind}.images.pt"
    env = {"OMP_NUM_THREADS": str(torch.get_num_threads()), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", LOADER, kind, str(export), str(latents), str(out)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(out, weights_only=True)


@pytest.fixture
def run(user_shell) -> Path:
    """A tiny MLP run with a moving average (what gan sample and gan export take by default)."""
    train(new_state(tiny_config(epochs=1, ema=0.9)), synthetic_images(), user_shell / "runs" / "r")
    return user_shell / "runs" / "r"


ONNX = [pytest.param("onnx", ".onnx", marks=pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                                                reason="onnxruntime is not installed"))]


@pytest.mark.parametrize("kind, suffix", [("torchscript", ".pt"), ("state-dict", ".safetensors"), ("state-dict", ".pth"),
                                          *ONNX])
def test_each_format_loads_without_gancli_and_draws_gan_samples_images(cli, run, tmp_path, kind, suffix):
    assert cli("sample", run, "-n", "64", "--seed", "3", "-o", "s.safetensors", "--device", "cpu").exit_code == 0
    exported = Path(f"generator{suffix}")
    result = cli("export", run, "-o", exported)
    assert result.exit_code == 0 and f"({kind})" in result.stderr
    sampled = read_samples(Path("s.safetensors").read_bytes(), "s").images
    images = standalone(kind, exported, Path("s.safetensors"), tmp_path)
    if kind == "onnx":  # another runtime's kernels: within a rounding step
        assert (images.int() - sampled.int()).abs().max() <= 1
    else:
        assert torch.equal(images, sampled)


def test_torchscript_carries_the_config_and_a_conditional_model_takes_labels(cli, user_shell, tmp_path):
    from tests.test_conditional import conditional_config, labelled_images

    images, labels = labelled_images()
    train(new_state(conditional_config()), images, user_shell / "runs" / "c", labels=labels)
    assert cli("sample", "runs/c", "--per-class", "16", "-o", "s.safetensors", "--device", "cpu").exit_code == 0
    assert cli("export", "runs/c", "-o", "c.pt", "--raw-generator").exit_code == 0
    extra = {"gancli.json": ""}
    torch.jit.load("c.pt", _extra_files=extra)
    meta = json.loads(extra["gancli.json"])
    assert meta["config"]["conditional"] and meta["generator"] == "raw" and meta["source"].endswith("checkpoint.safetensors")
    assert cli("export", "runs/c", "-o", "c2.pt").exit_code == 0
    assert torch.equal(standalone("torchscript", Path("c2.pt"), Path("s.safetensors"), tmp_path),
                       read_samples(Path("s.safetensors").read_bytes(), "s").images)


def test_the_course_format_is_the_course_generator_and_nothing_else(cli, user_shell, tmp_path):
    # the frontier's course-MLP recipe: the course's generator against a conv discriminator
    train(new_state(tiny_config(z_dim=100, g_hidden=(256, 512, 1024), image_shape=(1, 28, 28), d_arch="infogan", conv_width=4)),
          synthetic_images(64, side=28), user_shell / "runs" / "course")
    # one pass of 64 rows, as the loader's: GEMM rounding follows the row count (sampling.py)
    assert cli("sample", "runs/course", "-n", "64", "--batch-size", "64", "-o", "s.safetensors", "--device", "cpu").exit_code == 0
    result = cli("export", "runs/course", "--format", "course", "-o", "checkpoints/G.pth")
    assert result.exit_code == 0, result.stderr
    assert sorted(torch.load("checkpoints/G.pth", weights_only=True)) == [f"fc{i}.{p}" for i in range(1, 5) for p in ("bias", "weight")]
    assert torch.equal(standalone("course", Path("checkpoints/G.pth"), Path("s.safetensors"), tmp_path),
                       read_samples(Path("s.safetensors").read_bytes(), "s").images)


def test_bad_exports_are_one_line_errors(cli, run):
    refused = cli("export", run, "--format", "course", "-o", "G.pth")  # the tiny MLP is not the course's
    assert refused.exit_code == 1 and "writes the course's MLP generator" in refused.stderr
    assert cli("export", run, "-o", "g.zip").exit_code == 1 and not Path("g.zip").exists()
    mismatch = cli("export", run, "--format", "onnx", "-o", "g.pt")
    assert mismatch.exit_code == 1 and "a onnx file is named .onnx" in mismatch.stderr
    assert cli("export", run, "--format", "course", "-o", "G.onnx").exit_code == 1  # the course's file is a .pth
    assert cli("export", run, "--format", "jpeg").exit_code == 2
    assert cli("sample", run, "-n", "4", "-o", "s.safetensors", "--device", "cpu").exit_code == 0
    before = (run / "checkpoint.safetensors").read_bytes(), Path("s.safetensors").read_bytes()
    for target, said in ((run / "checkpoint.safetensors", "is the checkpoint exported"),
                         (Path("s.safetensors"), "is a gancli samples file")):  # gancli's files stay
        refused = cli("export", run, "-o", target)
        assert refused.exit_code == 1 and said in refused.stderr
    assert ((run / "checkpoint.safetensors").read_bytes(), Path("s.safetensors").read_bytes()) == before
    named = cli("export", run, "--format", "state-dict")  # the format's own file name
    assert named.exit_code == 0 and Path("generator.safetensors").is_file()
    assert cli("export", run, "--format", "state-dict").exit_code == 0  # an earlier export is replaced
