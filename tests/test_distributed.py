"""Training one run on several processes with torchrun (gloo on CPU, 2 processes, tiny data), and the
loop that reads its per-step scalars late, as it does on a GPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gancli import checkpoint as ckpt
from gancli import training
from gancli.errors import GancliError
from gancli.inference import open_checkpoint
from gancli.state import new_state
from gancli.streams import Samples, write_samples
from gancli.training import train
from tests.conftest import TINY, assert_same_checkpoint, gan_env, log_without_timings, synthetic_images, tiny_config

# 512 images at a global batch of 64: 8 steps an epoch, 32 images a step on each of 2 processes
ARGS = [*TINY[:-4], "--batch-size", "64", "--device", "cpu", "--eval-every", "0"]


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "squares.safetensors"
    write_samples(Samples(synthetic_images(512)), str(path))
    return path


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def torchrun(*args, cwd: Path) -> subprocess.Popen:
    """`torchrun --standalone --nproc-per-node 2 -m gancli ARGS`, started."""
    return subprocess.Popen([*TORCHRUN, "-m", "gancli", *map(str, args)], cwd=cwd, env=gan_env(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen, code: int = 0) -> str:
    _, err = process.communicate(timeout=300)
    assert process.returncode == code, err
    return err


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt.read_file(path, "gan")[0].items() if k.split(".")[0] in ("G", "D", "G_ema")}


def test_two_processes_of_32_images_train_the_weights_of_one_process_of_64(cli, tmp_path, data):
    # R1 (fgan's default, on the first step), gradient clipping and the moving average all see the global batch
    options = ["train", "fgan", "--data", data, *ARGS, "--ema", "0.9", "--clip-grad-norm", "1", "--epochs", "2"]
    err = finished(torchrun(*options, "--name", "two", cwd=tmp_path))
    assert cli(*options, "--name", "one").exit_code == 0
    two, one = weights(tmp_path / "runs/two/checkpoint.safetensors"), weights(tmp_path / "runs/one/checkpoint.safetensors")
    assert two.keys() == one.keys()
    # The same images and latents reach the same networks; only the float sums differ (two means of 32
    # averaged against one mean of 64). Adam moves a weight by about lr = 2e-4 a step whatever the
    # gradient's size, so after 16 steps such rounding stays far below one step: 1e-5 (we see ~3e-7).
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5, msg=name)
    for a, b in zip(log_without_timings(tmp_path / "runs/two"), log_without_timings(tmp_path / "runs/one"), strict=True):
        assert a.keys() == b.keys() and a["epoch"] == b["epoch"] and a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-3)
    # rank 0 alone reports and writes: one note, one log line an epoch, one grid an epoch
    err = " ".join(err.split())  # rich wraps lines
    assert err.count("run runs/two (") == 1 and "2 processes of 32 images a step" in err
    assert len(list((tmp_path / "runs/two/grids").iterdir())) == 2
    _, meta = ckpt.read_file(tmp_path / "runs/two/checkpoint.safetensors", "gan")
    assert meta["world_size"] == 2
    # a checkpoint of two processes samples in one, and continues there (saying it is not bit-exact)
    assert cli("sample", "runs/two", "-n", "32", "-o", "two.safetensors").exit_code == 0
    resumed = cli("resume", "runs/two", "--epochs", "1", "--device", "cpu")
    assert resumed.exit_code == 0 and "trained on 2 process(es), continuing on 1" in resumed.stderr


def test_ctrl_c_stops_every_process_and_resuming_on_as_many_is_bit_exact(tmp_path, data):
    # dropout draws from each process's own generator: resuming restores every one of them
    options = ["train", "vanilla", "--data", data, *ARGS, "--d-dropout", "0.3", "--epochs", "60"]
    cut = torchrun(*options, "--name", "cut", cwd=tmp_path)
    saved = tmp_path / "runs/cut/log.jsonl"
    deadline = time.time() + 120
    while not (saved.exists() and saved.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.05)
    cut.send_signal(signal.SIGINT)  # a terminal's Ctrl-C reaches torchrun, which passes it to every process
    err = finished(cut, 1)  # torchrun's own exit code after a signal
    assert " ".join(err.split()).count("resumable checkpoint saved") == 1
    _, meta = ckpt.read_file(tmp_path / "runs/cut/checkpoint.safetensors", "gan")
    assert 1 <= meta["epoch"] < 60 and meta["world_size"] == 2
    straight, resumed = torchrun(*options, "--name", "straight", cwd=tmp_path), torchrun("resume", "runs/cut", cwd=tmp_path)
    finished(straight), finished(resumed)
    assert_same_checkpoint(tmp_path / "runs/straight/checkpoint.safetensors", tmp_path / "runs/cut/checkpoint.safetensors")
    assert log_without_timings(tmp_path / "runs/straight") == log_without_timings(tmp_path / "runs/cut")


LEFT_BEHIND = """
import os, sys
import torch
from gancli import api

torch.set_num_threads(1)
threads = lambda: len(os.listdir("/proc/self/task"))
before = threads()
api.train("wgan-gp", data=sys.argv[1], epochs=1, z_dim=8, g_hidden=(32,), d_hidden=(32,), batch_size=64, eval_every=0,
          device="cpu", name="r")
# a file per rank: the ranks share torchrun's stdout, where their lines can interleave
with open(f"threads-{os.environ['RANK']}", "w") as out:
    out.write(f"{before} {threads()}")
"""


def test_a_finished_run_leaves_no_thread_of_the_process_group_running(tmp_path, data):
    # Gloo's threads outliving the run (the group kept alive by torch._dynamo's late import and by
    # DistributedDataParallel) freed the last collective's tensors while Python shut down: an abort
    # after "done", now and then, on either rank.
    (tmp_path / "left_behind.py").write_text(LEFT_BEHIND)
    out = subprocess.run([*TORCHRUN, "left_behind.py", str(data)], cwd=tmp_path, env=gan_env(tmp_path), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    counts = [(tmp_path / f"threads-{rank}").read_text().split() for rank in (0, 1)]
    assert all(before == after for before, after in counts), counts


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_killing_one_process_ends_the_others_and_keeps_the_checkpoint(tmp_path, data):
    run = torchrun("train", "vanilla", "--data", data, *ARGS, "--epochs", "1000", "--name", "r", cwd=tmp_path)
    checkpoint = tmp_path / "runs/r/checkpoint.safetensors"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.05)
    ranks = children(run.pid)
    assert len(ranks) == 2
    killed = time.time()
    os.kill(ranks[-1], signal.SIGKILL)
    run.communicate(timeout=60)
    assert run.returncode != 0 and time.time() - killed < 30
    assert not any(Path(f"/proc/{pid}").exists() and "gancli" in Path(f"/proc/{pid}/cmdline").read_text() for pid in ranks)
    opened = open_checkpoint(checkpoint, "cpu")  # whole: written atomically by rank 0
    assert opened.record.progress.epoch >= 1 and all(torch.isfinite(p).all() for p in opened.G.parameters())


def test_a_value_read_late_still_names_its_step_and_nothing_is_saved_after_it(tmp_path, monkeypatch):
    monkeypatch.setitem(training.READ_EVERY, "cpu", 4)  # read every 4th step, as a GPU reads every 32nd
    step = training.train_step

    def poisoned_before_step_13(state, real, ms_lambda, labels=None):
        if state.step == 12:
            with torch.no_grad():
                next(state.D.parameters()).fill_(float("nan"))
        return step(state, real, ms_lambda, labels)

    monkeypatch.setattr(training, "train_step", poisoned_before_step_13)
    read = []
    with pytest.raises(GancliError, match="diverged at epoch 2, step 13: d_loss = nan"):
        train(new_state(tiny_config(epochs=3)), synthetic_images(), tmp_path,
              on_step=lambda state, scalars: read.append(state.step))
    assert read[:8] == [4, 4, 4, 4, 8, 8, 8, 8]  # every step is seen, in bursts at each read
    _, meta = ckpt.read_file(tmp_path / "checkpoint.safetensors", "gan")
    assert meta["epoch"] == 1 and len(log_without_timings(tmp_path)) == 1
    assert json.loads((tmp_path / "diverged.json").read_text())["step"] == 13


def _precision_of_rank(rank: int, port: int, out: Path) -> None:
    """A torchrun rank, spawned: rank 0 on a CPU with native bf16, rank 1 on one without; writes the
    precision it trains with."""
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from gancli import inference
    from gancli.distributed import joined

    inference.native_bf16 = lambda device: rank == 0
    with joined("cpu") as (world, device):
        (out / f"rank{rank}").write_text(new_state(tiny_config(precision="auto"), device, world).config.precision)


def test_precision_auto_is_rank_0s_on_every_rank_as_the_checkpoint_records_it(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    mp.spawn(_precision_of_rank, args=(port, tmp_path), nprocs=2)
    assert [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)] == ["bf16", "bf16"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU loop is checked where one is")
def test_a_run_trained_on_the_gpu_samples_on_the_cpu(tmp_path):
    state = train(new_state(tiny_config(epochs=2, ema=0.9), "cuda"), synthetic_images(), tmp_path)
    assert state.step == 16 and all(p.is_cuda for p in state.G.parameters())
    G = open_checkpoint(tmp_path / "checkpoint.safetensors", "cpu").G
    assert all(torch.isfinite(p).all() for p in G.parameters())
