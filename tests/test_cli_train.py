"""The training commands as a user runs them: subprocesses, exit codes, files on disk."""

import signal
import subprocess
import sys
import time

from tests.conftest import TINY, assert_same_checkpoint, gan_env, log_without_timings, run_gan

COMMANDS = ["train", "pretrain", "resume", "sample", "interpolate", "filter", "score"]


def test_help_lists_every_command_and_each_command_has_help(cli):
    top = cli("--help").stdout
    assert all(c in top for c in COMMANDS)
    for command in COMMANDS:
        out = cli(command, "--help").stdout
        assert "Usage" in out and "Example" in out
    # rich markup must not swallow a bracketed phrase of the help text
    out = cli("train", "fgan", "--help").stdout
    assert "[default: 64]." in out and "(-E[g_f(v)])" in out
    # typed choices are listed
    assert "<vanilla|fgan|wgan|wgan-gp>" in out and "<adam|rmsprop|sgd>" in out


def test_resume_is_bit_exact_through_the_cli(gan, tmp_path, tiny_data):
    common = ["--data", tiny_data, *TINY, "--d-dropout", "0.2", "--seed", "3"]
    gan("train", "vanilla", *common, "--epochs", "4", "--name", "straight", check=0)
    gan("train", "vanilla", *common, "--epochs", "2", "--name", "split", check=0)
    out = gan("resume", "runs/split/checkpoint.safetensors", "--epochs", "2", "--device", "cpu", check=0)
    assert "epoch 4/4" in out.stderr.decode()
    runs = tmp_path / "runs"
    assert_same_checkpoint(runs / "straight/checkpoint.safetensors", runs / "split/checkpoint.safetensors")
    assert log_without_timings(runs / "straight") == log_without_timings(runs / "split")
    assert sorted(p.name for p in (runs / "split/grids").iterdir()) == [f"epoch-00{i}.png" for i in range(1, 5)]


def test_resume_without_argument_continues_the_latest_run(cli, tmp_path, tiny_data):
    assert cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--name", "a").exit_code == 0
    assert (tmp_path / "runs/latest").resolve().name == "a"
    assert cli("resume", "--device", "cpu").exit_code == 0  # default: as many epochs as configured (1 more)
    assert [r["epoch"] for r in log_without_timings(tmp_path / "runs/a")] == [1, 2]


def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_130(tmp_path, tiny_data):
    args = ["train", "vanilla", "--data", tiny_data, *TINY, "--seed", "5"]
    run_gan(*args, "--epochs", "30", "--name", "straight", cwd=tmp_path, check=0)
    proc = subprocess.Popen([sys.executable, "-m", "gancli", *map(str, args), "--epochs", "30", "--name", "cut"],
                            cwd=tmp_path, env=gan_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = tmp_path / "runs/cut/log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert "resumable checkpoint" in err.decode() and "Traceback" not in err.decode()
    run_gan("resume", "--device", "cpu", cwd=tmp_path, check=0)  # finishes the 30 configured epochs
    assert_same_checkpoint(tmp_path / "runs/straight/checkpoint.safetensors", tmp_path / "runs/cut/checkpoint.safetensors")
    assert log_without_timings(tmp_path / "runs/straight") == log_without_timings(tmp_path / "runs/cut")
