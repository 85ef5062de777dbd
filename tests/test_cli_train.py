"""The training commands as a user runs them: subprocesses, exit codes, files on disk."""

import json
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from tests.conftest import TINY, run_gan

COMMANDS = ["train", "pretrain", "resume", "sample", "interpolate", "filter", "score"]


def _log_without_timings(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in records]


def _assert_same_checkpoint(a, b):
    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not (ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape and (ta[k] == tb[k]).all())]
    assert different == []


def test_help_lists_every_command_and_each_command_has_help(gan):
    top = gan("--help", check=0).stdout.decode()
    assert all(c in top for c in COMMANDS)
    for command in COMMANDS:
        out = gan(command, "--help", check=0).stdout.decode()
        assert "Usage" in out and "Example" in out
    # rich markup must not swallow a bracketed phrase of the help text
    out = gan("train", "fgan", "--help", check=0).stdout.decode()
    assert "Batch size [default: 64]." in out and "(-E[g_f(v)], default)" in out


def test_resume_is_bit_exact_through_the_cli(gan, tmp_path, tiny_data):
    common = ["--data", tiny_data, *TINY, "--d-dropout", "0.2", "--seed", "3"]
    gan("train", "vanilla", *common, "--epochs", "4", "--name", "straight", check=0)
    gan("train", "vanilla", *common, "--epochs", "2", "--name", "split", check=0)
    out = gan("resume", "runs/split/checkpoint.safetensors", "--epochs", "2", "--device", "cpu", check=0)
    assert "epoch 4/4" in out.stderr.decode()
    runs = tmp_path / "runs"
    _assert_same_checkpoint(runs / "straight/checkpoint.safetensors", runs / "split/checkpoint.safetensors")
    assert _log_without_timings(runs / "straight") == _log_without_timings(runs / "split")
    assert sorted(p.name for p in (runs / "split/grids").iterdir()) == [f"epoch-00{i}.png" for i in range(1, 5)]


def test_resume_without_argument_continues_the_latest_run(gan, tmp_path, tiny_data):
    gan("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--name", "a", check=0)
    assert (tmp_path / "runs/latest").resolve().name == "a"
    gan("resume", "--device", "cpu", check=0)  # default: as many epochs as configured (1 more)
    assert [r["epoch"] for r in _log_without_timings(tmp_path / "runs/a")] == [1, 2]


def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_130(tmp_path, tiny_data):
    args = ["train", "vanilla", "--data", tiny_data, *TINY, "--seed", "5"]
    run_gan(*args, "--epochs", "30", "--name", "straight", cwd=tmp_path, check=0)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("GANCLI_")}
    proc = subprocess.Popen([sys.executable, "-m", "gancli", *map(str, args), "--epochs", "30", "--name", "cut"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = tmp_path / "runs/cut/log.jsonl"
    deadline = time.time() + 120
    while not (log.exists() and log.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert "resumable checkpoint" in err.decode() and "Traceback" not in err.decode()
    run_gan("resume", "--device", "cpu", cwd=tmp_path, check=0)  # finishes the 30 configured epochs
    _assert_same_checkpoint(tmp_path / "runs/straight/checkpoint.safetensors", tmp_path / "runs/cut/checkpoint.safetensors")
    assert _log_without_timings(tmp_path / "runs/straight") == _log_without_timings(tmp_path / "runs/cut")


def _assert_one_line_error(result, *needles):
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("gan ")
    for needle in needles:
        assert needle in err


def test_bad_checkpoints_give_one_line_and_exit_1(gan, tmp_path, tiny_data):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 50)
    _assert_one_line_error(gan("resume", "junk.safetensors"), "not a readable safetensors")
    _assert_one_line_error(gan("resume", "missing.safetensors"), "no such file")
    _assert_one_line_error(gan("resume", tiny_data), "holds 'samples', expected 'gan'")
    _assert_one_line_error(gan("resume"), "no latest run")


def test_bad_data_gives_one_line_and_exit_1(gan, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts/notes.txt").write_text("hello")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake/a.png").write_text("not a png")
    _assert_one_line_error(gan("train", "vanilla", "--data", "empty"), "no images in folder")
    _assert_one_line_error(gan("train", "vanilla", "--data", "texts"), "no images in folder", "1 other files")
    _assert_one_line_error(gan("train", "vanilla", "--data", "fake"), "not a readable image")
    _assert_one_line_error(gan("train", "vanilla", "--data", "nosuchset"), "no such file, folder or dataset")
    _assert_one_line_error(gan("train", "gan", "--data", "x"), "unknown objective")


def test_unwritable_runs_folder_is_a_user_error(gan, tmp_path, tiny_data):
    if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0:
        blocker = tmp_path / "afile"
        blocker.write_text("a file where the runs folder should be")
        result = gan("train", "vanilla", "--data", tiny_data, *TINY, "--runs", blocker / "runs")
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        result = gan("train", "vanilla", "--data", tiny_data, *TINY, "--runs", tmp_path / "ro")
    _assert_one_line_error(result, "cannot create a run")
