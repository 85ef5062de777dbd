"""sample, filter, interpolate and the samples stream, as shell pipelines and in-process."""

import os
import pty
import subprocess
import sys

import numpy as np
import pytest
import torch

from gancli.data import load_samples
from gancli.sampling import interpolation_latents, slerp
from gancli.streams import read_samples, tile
from tests.conftest import gan_env, run_gan, shell

READER = ("import sys; from gancli.streams import read_samples; s = read_samples(sys.stdin.buffer.read(), 'stdin'); "
          "print(len(s), tuple(s.images.shape[1:]), s.score is not None, s.z is not None)")


def test_sample_reject_filter_pipeline(checkpoints, tmp_path):
    ckpt = checkpoints / "checkpoint.safetensors"
    result = shell(f"gan sample {ckpt} -n 64 --reject 0.6 --seed 1 | gan filter --ckpt {ckpt} --keep-top 0.5 "
                   f"| python -c \"{READER}\"", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["32", "(1,", "8,", "8)", "True", "True"]
    err = result.stderr.decode()
    assert "accepted 64 of" in err and "kept 32 of 64" in err


def test_rejected_samples_all_reach_the_threshold(checkpoints, tmp_path):
    ckpt = checkpoints / "checkpoint.safetensors"
    out = run_gan("sample", ckpt, "-n", "100", "--reject", "0.55", "-o", "s.safetensors", cwd=tmp_path, check=0)
    samples = load_samples(str(tmp_path / "s.safetensors"))
    assert len(samples) == 100 and (torch.sigmoid(samples.score) >= 0.55).all()  # vanilla: r = exp(v)
    assert "accepted 100 of" in out.stderr.decode()


def test_folder_and_file_outputs_hold_the_same_pixels(checkpoints, tmp_path):
    ckpt = checkpoints / "checkpoint.safetensors"
    run_gan("sample", ckpt, "-n", "20", "-o", "pngs", cwd=tmp_path, check=0)
    run_gan("sample", ckpt, "-n", "20", "-o", "s.safetensors", "--grid", "g.png", cwd=tmp_path, check=0)
    from_pngs = load_samples(str(tmp_path / "pngs")).images
    assert torch.equal(from_pngs, load_samples(str(tmp_path / "s.safetensors")).images)
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 20
    from PIL import Image

    grid = torch.from_numpy(np.array(Image.open(tmp_path / "g.png")))
    side = from_pngs.shape[-1]
    top_left = 2 + side + 2  # image 9 is in row 1, column 1 of 8, each framed by 2 black pixels
    assert torch.equal(grid[top_left:top_left + side, top_left:top_left + side], from_pngs[9, 0])


@pytest.mark.parametrize("n, nrow, channels", [(64, 8, 1), (10, 4, 1), (3, 8, 3)])
def test_grids_are_laid_out_as_torchvision_make_grid(n, nrow, channels):
    from torchvision.utils import make_grid

    images = torch.randint(0, 256, (n, channels, 5, 6), dtype=torch.uint8)
    assert torch.equal(tile(images, nrow), make_grid(images, nrow=nrow)[:channels])


def test_same_seed_same_images_whatever_the_batch_size(checkpoints, tmp_path):
    ckpt = checkpoints / "checkpoint.safetensors"
    outputs = [run_gan("sample", ckpt, "-n", "150", "--seed", "9", "--batch-size", b, "-o", "-", cwd=tmp_path, check=0).stdout
               for b in ("7", "64", "1000")]
    images = [read_samples(o, "stdout").images for o in outputs]
    assert torch.equal(images[0], images[1]) and torch.equal(images[1], images[2])
    other_seed = run_gan("sample", ckpt, "-n", "150", "--seed", "10", "-o", "-", cwd=tmp_path, check=0).stdout
    assert not torch.equal(read_samples(other_seed, "x").images, images[0])


def test_refuses_to_write_binary_to_a_terminal(checkpoints, tmp_path):
    controller, terminal = pty.openpty()
    result = subprocess.run([sys.executable, "-m", "gancli", "sample", str(checkpoints), "-n", "4"], cwd=tmp_path,
                            env=gan_env(tmp_path), stdout=terminal, stderr=subprocess.PIPE, timeout=120)
    os.close(terminal), os.close(controller)
    assert result.returncode == 1 and "refusing to write a binary samples stream to a terminal" in result.stderr.decode()


def test_a_closed_pipe_ends_quietly(checkpoints, tmp_path):
    result = shell(f"gan sample {checkpoints} -n 5000 | head -c 10 > /dev/null", tmp_path)
    assert result.returncode == 0 and result.stderr.decode() == "", result.stderr.decode()


@pytest.mark.parametrize("command, needle", [
    ("gan filter --ckpt {c} --reject 0.6 < {c}/checkpoint.safetensors", "holds 'gan', expected 'samples'"),
    ("gan filter --ckpt {c} --reject 0.6 < /dev/null", "stdin is empty"),
    ("gan sample {c}/wgan.safetensors -n 8 --reject 0.6 -o x.safetensors", "--keep-top"),
    ("gan sample {c} -n 8 --reject 0.99999 --max-draws 2000 -o x.safetensors", "accepted in"),
    ("gan filter --ckpt {c} < /dev/null", "exactly one of"),
])
def test_wrong_inputs_give_one_line_and_exit_1(checkpoints, tmp_path, command, needle):
    result = shell(command.format(c=checkpoints), tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1 and needle in err, err


def test_keep_top_works_for_a_wgan_critic(checkpoints, tmp_path):
    run_gan("sample", checkpoints / "wgan.safetensors", "-n", "10", "--keep-top", "0.25", "-o", "w.safetensors",
            cwd=tmp_path, check=0)
    samples = load_samples(str(tmp_path / "w.safetensors"))
    assert len(samples) == 10


def test_drs_and_latent_tricks_generate_n_images(checkpoints, tmp_path):
    for extra in (["--reject-method", "drs"], ["--mix", "--truncation", "1.0", "--reject", "0.5"]):
        run_gan("sample", checkpoints, "-n", "30", *extra, "-o", "d.safetensors", cwd=tmp_path, check=0)
        assert len(load_samples(str(tmp_path / "d.safetensors"))) == 30


def test_interpolate_outputs(checkpoints, tmp_path):
    run_gan("interpolate", checkpoints, "--pairs", "3", "--steps", "5", "-o", "grid.png", cwd=tmp_path, check=0)
    run_gan("interpolate", checkpoints, "--pairs", "2", "--steps", "4", "--mode", "lerp", "-o", "a.gif", cwd=tmp_path, check=0)
    frames = run_gan("interpolate", checkpoints, "--seeds", "3,7", "--steps", "6", "-o", "-", cwd=tmp_path, check=0).stdout
    samples = read_samples(frames, "stdout")
    assert len(samples) == 12 and samples.meta["seeds"] == [3, 7]
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size[0] > Image.open(tmp_path / "grid.png").size[1]
    assert Image.open(tmp_path / "a.gif").n_frames == 6  # 4 steps there, 2 back


def test_slerp_keeps_endpoints_and_norm_and_falls_back_to_lerp():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    z2 = z2 / z2.norm(dim=1, keepdim=True) * z1.norm(dim=1, keepdim=True)
    path = interpolation_latents(z1, z2, 7, "slerp").view(4, 7, 16)
    torch.testing.assert_close(path[:, 0], z1)
    torch.testing.assert_close(path[:, -1], z2)
    torch.testing.assert_close(path.norm(dim=2), z1.norm(dim=1, keepdim=True).expand(4, 7))
    parallel = slerp(z1[:1], 2 * z1[:1], torch.tensor([[0.5]]))
    torch.testing.assert_close(parallel, 1.5 * z1[:1])
