"""Regression tests of issue 26's run-folder and checkpoint cases: each failed on the code before it.

Nothing lost (a lone copy is never trained in place, one writer per run, no empty run folder after
Ctrl-C), bit-exact resume with dropout and evaluation, best.safetensors compared like with like,
reserved run names, and `gan runs` on damaged log lines."""

import json
import shutil
import subprocess
import sys

import pytest

from gancli import api
from gancli import checkpoint as ckpt
from gancli.errors import GancliError
from gancli.evaluation import make_evaluator
from gancli.resuming import resume_run
from gancli.runs import RunLock, read_log, run_summary
from gancli.state import new_state
from gancli.training import train
from tests.conftest import TINY, assert_same_checkpoint, gan_env, synthetic_images, tiny_config


def one_line_error(result, needle):
    assert result.exit_code == 1, result.stderr
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr


@pytest.fixture
def tiny_run(cli, tiny_data, tmp_path):
    assert cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--name", "a").exit_code == 0
    return tmp_path / "runs/a"


def test_a_lone_copy_named_checkpoint_becomes_a_child_run_and_stays_untouched(cli, tiny_run, tmp_path):
    lone = tmp_path / "dl/downloads/checkpoint.safetensors"
    lone.parent.mkdir(parents=True)
    shutil.copy(tiny_run / "checkpoint.safetensors", lone)
    before = lone.read_bytes()
    result = cli("resume", lone, "--epochs", "1", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "not a run's latest checkpoint" in result.stderr
    assert lone.read_bytes() == before and sorted(p.name for p in lone.parent.iterdir()) == ["checkpoint.safetensors"]
    assert not (tmp_path / "dl/latest").exists()
    child = (tmp_path / "runs/latest").resolve()
    assert child.parent == tmp_path / "runs" and child.name != "a"
    assert ckpt.read_checkpoint(child / "checkpoint.safetensors").parent == str(lone)


def test_a_run_that_is_training_is_refused_and_a_killed_holder_locks_nothing(cli, tiny_run):
    log = (tiny_run / "log.jsonl").read_bytes()
    with RunLock(tiny_run):  # as a process training the run holds it
        one_line_error(cli("resume", tiny_run, "--epochs", "1", "--device", "cpu"), "is being trained now")
        assert run_summary(tiny_run)["status"] == "running"
    assert (tiny_run / "log.jsonl").read_bytes() == log
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from gancli.runs import RunLock\n"
                               "with RunLock(sys.argv[1]): print('locked', flush=True); time.sleep(60)", str(tiny_run)],
                              stdout=subprocess.PIPE, env=gan_env(tiny_run))
    assert holder.stdout.readline() == b"locked\n"
    one_line_error(cli("resume", tiny_run, "--epochs", "1", "--device", "cpu"), f"pid {holder.pid}")
    holder.kill()  # kill -9: no chance to clean up
    holder.wait()
    assert run_summary(tiny_run)["status"] == "finished"
    assert cli("resume", tiny_run, "--epochs", "1", "--device", "cpu").exit_code == 0
    assert [r["epoch"] for r in read_log(tiny_run)] == [1, 2]


def test_training_under_the_lock_refuses_a_checkpoint_that_moved_on(tmp_path):
    run = tmp_path / "r"
    train(new_state(tiny_config()), synthetic_images(), run)
    stale = resume_run(run / "checkpoint.safetensors", epochs=1)
    train(resume_run(run / "checkpoint.safetensors", epochs=1).state, synthetic_images(), run)  # another writer got there first
    with pytest.raises(GancliError, match="not the checkpoint this training continues"):
        train(stale.state, synthetic_images(), run)
    assert [r["epoch"] for r in read_log(run)] == [1, 2]


def evaluator(config):
    return make_evaluator(config, synthetic_images(32, seed=9), "cpu")


@pytest.mark.parametrize("objective, options", [("vanilla", {}), ("fgan", {"div": "kl"})])
def test_resume_is_bit_exact_with_dropout_and_evaluation_and_evaluation_changes_nothing(tmp_path, monkeypatch, objective,
                                                                                       options):
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))
    config = tiny_config(objective, epochs=2, d_dropout=0.3, eval_every=1, eval_n=32, **options)
    train(new_state(config), synthetic_images(), tmp_path / "straight", evaluate=evaluator(config))
    half = tiny_config(objective, epochs=1, d_dropout=0.3, eval_every=1, eval_n=32, **options)
    train(new_state(half), synthetic_images(), tmp_path / "split", evaluate=evaluator(half))
    resumed = resume_run(tmp_path / "split/checkpoint.safetensors", epochs=1)
    train(resumed.state, synthetic_images(), tmp_path / "split", evaluate=evaluator(resumed.state.config))
    train(new_state(config), synthetic_images(), tmp_path / "blind")
    assert_same_checkpoint(tmp_path / "straight/checkpoint.safetensors", tmp_path / "split/checkpoint.safetensors")
    assert_same_checkpoint(tmp_path / "straight/checkpoint.safetensors", tmp_path / "blind/checkpoint.safetensors")


def scripted(*fids, eval_n):
    left = list(fids)
    return lambda G: {"fid": left.pop(0), "eval_n": eval_n}


def test_best_compares_only_fids_over_as_many_images(tmp_path):
    run = tmp_path / "r"
    train(new_state(tiny_config(epochs=2, eval_every=1, eval_n=2000)), synthetic_images(), run,
          evaluate=scripted(10.0, 12.0, eval_n=2000))
    resumed = resume_run(run / "checkpoint.safetensors", {"eval_n": 20}, epochs=2)
    train(resumed.state, synthetic_images(), run, evaluate=scripted(11.0, 13.0, eval_n=20))
    assert [r["best"] for r in read_log(run)] == [True, False, True, False]
    assert ckpt.read_checkpoint(run / "best.safetensors").progress.epoch == 3  # the best at N=20, not the N=2000 epoch
    summary = run_summary(run)
    assert (summary["best_fid"], summary["best_fid_epoch"], summary["fid_n"]) == (11.0, 3, 20)


@pytest.mark.parametrize("name", ["latest", ".hidden", "a/b", ".."])
def test_a_reserved_run_name_is_refused_before_any_work(cli, tiny_data, tmp_path, name):
    one_line_error(cli("train", "vanilla", "--data", tiny_data, *TINY, "--name", name), "reserved or not a folder name")
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_during_a_new_runs_setup_leaves_no_run_folder(cli, tiny_data, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "_evaluator", interrupted)
    result = cli("train", "vanilla", "--data", tiny_data, *TINY, "--name", "x")
    assert result.exit_code == 130, result.stderr
    assert list((tmp_path / "runs").iterdir()) == []


def test_the_library_refuses_zero_epochs(tiny_data, tmp_path):
    for objective in ("vanilla", tiny_config()):
        with pytest.raises(GancliError, match="--epochs"):
            api.train(objective, epochs=0, data=str(tiny_data), runs=str(tmp_path / "runs"), device="cpu")
    assert not (tmp_path / "runs").exists()


def test_runs_reads_damaged_log_lines_and_prints_valid_json(cli, tiny_run):
    with open(tiny_run / "log.jsonl", "a") as log:
        log.write('{"epoch": 2, "seconds": null}\n{"epoch": 3, "seconds": "3 s", "eval_seconds": [1]}\n'
                  '{"epoch": 4, "fid": NaN, "seconds": Infinity}\n')
    result = cli("runs", "--json")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in gan runs --json"))[0]
    assert row["name"] == "a" and row["best_fid"] is None and row["seconds"] >= 0
    assert cli("runs").exit_code == 0


def test_a_calibration_reference_too_small_names_ref_and_the_help_says_four(cli, checkpoints, tiny_data):
    one_line_error(cli("calibrate", checkpoints / "checkpoint.safetensors", "--ref", f"{tiny_data}[:3]", "--device", "cpu"),
                   "--ref")
    result = cli("calibrate", checkpoints / "checkpoint.safetensors", "--ref", tiny_data, "-n", "3")
    assert result.exit_code == 2 and "-n" in result.stderr


def test_a_process_holding_no_lock_leaves_a_stale_mark_that_no_one_obeys(cli, tiny_run):
    (tiny_run / ".training").write_text(json.dumps({"pid": 1, "host": "elsewhere"}))  # a mark without a lock
    assert run_summary(tiny_run)["status"] == "finished"
    assert cli("resume", tiny_run, "--epochs", "1", "--device", "cpu").exit_code == 0
    assert not (tiny_run / ".training").exists()


def test_resuming_through_runs_latest_or_from_inside_the_run_keeps_latest_a_link_to_the_run(cli, tiny_run, tmp_path,
                                                                                           monkeypatch):
    assert cli("resume", "runs/latest", "--epochs", "1", "--device", "cpu").exit_code == 0
    assert (tmp_path / "runs/latest").resolve() == tiny_run
    monkeypatch.chdir(tiny_run)
    assert cli("resume", "checkpoint.safetensors", "--epochs", "1", "--device", "cpu").exit_code == 0
    assert (tmp_path / "runs/latest").resolve() == tiny_run and [r["epoch"] for r in read_log(tiny_run)] == [1, 2, 3]


def test_a_checkpoint_without_its_training_state_still_samples_and_refuses_to_resume(cli, tiny_run, tmp_path):
    tensors, meta = ckpt.read_file(tiny_run / "checkpoint.safetensors", "gan")
    slim = {k: v for k, v in tensors.items() if k.split(".")[0] in ("G", "D")}
    (tmp_path / "slim.safetensors").write_bytes(ckpt.encode(slim, {k: v for k, v in meta.items() if k != "optimizers"}))
    assert cli("sample", tmp_path / "slim.safetensors", "-n", "4", "-o", "x.safetensors", "--device", "cpu").exit_code == 0
    one_line_error(cli("resume", tmp_path / "slim.safetensors", "--device", "cpu"), "training state is unreadable")


def test_a_filesystem_without_locks_trains_unguarded_as_before(cli, tiny_data, tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--name", "nf").exit_code == 0
    assert run_summary(tmp_path / "runs/nf")["status"] == "finished"


def test_a_look_at_the_lock_does_not_refuse_the_one_writer(tiny_run):
    import fcntl
    import os
    import threading

    fd = os.open(tiny_run / ".training", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)  # `gan runs` looking, as the writer starts
    threading.Timer(0.1, os.close, (fd,)).start()
    with RunLock(tiny_run):
        pass


def test_plot_json_leaves_out_values_that_are_not_finite(cli, tiny_run):
    with open(tiny_run / "log.jsonl", "a") as log:
        log.write('{"epoch": 2, "fid": NaN, "d_loss": "x"}\n')
    result = cli("plot", tiny_run, "--json", "-o", "c.png")
    assert result.exit_code == 0, result.stderr
    drawn = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in gan plot --json"))
    series = drawn["runs"][0]["series"]
    assert "fid" not in series and [epoch for epoch, _ in series["d_loss"]] == [1]


@pytest.mark.parametrize("call, needle", [
    (lambda run: api.sample(run, n=4, batch_size=0, device="cpu"), "--batch-size"),
    (lambda run: api.sample(run, n=4, keep_top=0, device="cpu"), "--keep-top"),
    (lambda run: api.sample(run, n=4, max_draws=0, device="cpu"), "--max-draws"),
    (lambda run: api.interpolate(run, seeds=(), device="cpu"), "at least one seed"),
])
def test_the_library_checks_what_the_cli_checks(tiny_run, call, needle):
    with pytest.raises(GancliError, match=needle):
        call(tiny_run)
