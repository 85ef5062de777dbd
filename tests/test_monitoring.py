"""Quality during training (--eval-every, best.safetensors), `gan plot` and `gan runs`."""

import json
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from gancli import checkpoint as ckpt
from gancli.config import TrainConfig
from gancli.errors import GancliError, TrainingInterrupted
from gancli.evaluation import EVAL_FIELDS, make_evaluator
from gancli.resuming import resume_run
from gancli.runs import list_runs, read_log, resolve_checkpoint, run_summary
from gancli.state import new_state
from gancli.training import TIMING_FIELDS, train
from tests.conftest import TINY, shell, synthetic_images, tiny_config, write_idx

TAB10_BLUE, TAB10_ORANGE = (31, 119, 180), (255, 127, 14)  # the first two runs' colours in `gan plot`


def logged(run):
    return read_log(run)


def scripted_fids(*fids, eval_n: int = TrainConfig.eval_n):
    """An evaluator whose FIDs are given, over `eval_n` images as the real one says: it decides which epoch is best."""
    left = list(fids)
    return lambda G: {"fid": left.pop(0), "eval_n": eval_n}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))


def test_eval_fields_appear_at_the_requested_epochs_and_the_last_only(tmp_path, cache):
    config = tiny_config(epochs=5, eval_every=2, eval_n=64)
    evaluate = make_evaluator(config, synthetic_images(64, seed=9), "cpu")
    train(new_state(config), synthetic_images(), tmp_path / "run", evaluate=evaluate)
    records = logged(tmp_path / "run")
    assert [r["epoch"] for r in records if "fid" in r] == [2, 4, 5]
    for record in records:
        assert set(EVAL_FIELDS) <= record.keys() if "fid" in record else not set(EVAL_FIELDS) & record.keys()
    assert all(r["eval_n"] == 64 and np.isfinite(r["fid"]) and 0 <= r["precision"] <= 1 for r in records if "fid" in r)


def test_evaluating_changes_nothing_the_training_draws(tmp_path, cache):
    config = tiny_config("fgan", div="kl", epochs=2, eval_n=32)
    with_eval = train(new_state(config), synthetic_images(), tmp_path / "a",
                      evaluate=make_evaluator(config, synthetic_images(32, seed=9), "cpu"))
    without = train(new_state(config), synthetic_images(), tmp_path / "b")
    for net in ("G", "D"):
        mine, theirs = getattr(with_eval, net).state_dict(), getattr(without, net).state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    added = EVAL_FIELDS + ("eval_n", "eval_features", "best")
    untimed = lambda r: {k: v for k, v in r.items() if k not in TIMING_FIELDS and k not in added}
    assert [untimed(r) for r in logged(tmp_path / "a")] == [untimed(r) for r in logged(tmp_path / "b")]


def test_best_checkpoint_follows_the_lowest_fid_across_resume(tmp_path):
    run = tmp_path / "runs" / "r"
    train(new_state(tiny_config(epochs=3, eval_every=1)), synthetic_images(), run, evaluate=scripted_fids(5.0, 3.0, 4.0))
    best_epoch = lambda: ckpt.read_file(run / "best.safetensors", "gan")[1]["epoch"]
    assert best_epoch() == 2 and [r["best"] for r in logged(run)] == [True, True, False]
    resumed = resume_run(run / "checkpoint.safetensors", epochs=2)
    train(resumed.state, synthetic_images(), run, evaluate=scripted_fids(3.5, 2.5))
    assert [r["best"] for r in logged(run)][3:] == [False, True] and best_epoch() == 5
    assert resolve_checkpoint(str(run), best=True) == run / "best.safetensors"
    # the best copy is its own file: the next epoch's checkpoint does not change it
    resumed = resume_run(run / "checkpoint.safetensors", epochs=1)
    train(resumed.state, synthetic_images(), run, evaluate=scripted_fids(9.0))
    assert best_epoch() == 5 and ckpt.read_file(run / "checkpoint.safetensors", "gan")[1]["epoch"] == 6


def test_sample_best_uses_the_best_epoch_and_says_when_there_is_none(cli, tmp_path):
    run = tmp_path / "runs" / "r"
    train(new_state(tiny_config(epochs=2, eval_every=1)), synthetic_images(), run, evaluate=scripted_fids(2.0, 3.0))
    result = cli("sample", run, "--best", "-n", "8", "-o", tmp_path / "s.safetensors", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    _, meta = ckpt.read_file(tmp_path / "s.safetensors", "samples")
    assert meta["source"] == str(run / "best.safetensors")
    train(new_state(tiny_config(epochs=1)), synthetic_images(), tmp_path / "runs" / "plain")
    result = cli("sample", tmp_path / "runs" / "plain", "--best", "-n", "8", "-o", tmp_path / "t.safetensors")
    assert result.exit_code == 1 and "has no best.safetensors" in result.stderr and result.stderr.count("\n") == 1


def test_evaluation_is_off_for_other_data_and_refused_when_asked(cli, tiny_data):
    result = cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--name", "x")
    assert result.exit_code == 0, result.stderr
    assert ("evaluation off: gancli ships classifiers for mnist, fashion-mnist, not for tiny.safetensors"
            in " ".join(result.stderr.split()))
    assert ckpt.read_file("runs/x/checkpoint.safetensors", "gan")[1]["config"]["eval_every"] == 0
    result = cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--eval-every", "1")
    assert result.exit_code == 1 and "not one for" in result.stderr and result.stderr.count("\n") == 1


def line_pixels(png, colour, tolerance=40):
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(pixels - colour).sum(axis=2) < tolerance).sum())


def test_plot_draws_lines_for_one_run_and_for_a_parent_and_its_child(cli, tmp_path):
    parent, child = tmp_path / "runs" / "js", tmp_path / "runs" / "kl"
    train(new_state(tiny_config("fgan", div="js", epochs=3, eval_every=1)), synthetic_images(), parent,
          evaluate=scripted_fids(9.0, 7.0, 8.0))
    resumed = resume_run(parent / "checkpoint.safetensors", {"div": "kl"}, epochs=2, name="kl")
    train(resumed.state, synthetic_images(), resumed.run, evaluate=scripted_fids(6.0, 5.0))
    result = cli("plot", parent, "-o", tmp_path / "one.png")
    assert result.exit_code == 0, result.stderr
    width, height = Image.open(tmp_path / "one.png").size
    assert width >= 800 and height >= 600
    assert line_pixels(tmp_path / "one.png", TAB10_BLUE) > 500 and line_pixels(tmp_path / "one.png", TAB10_ORANGE) == 0
    result = cli("plot", parent, child, "-o", tmp_path / "two.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert line_pixels(tmp_path / "two.png", TAB10_ORANGE) > 500
    drawn = json.loads(result.stdout)
    kl = drawn["runs"][1]
    assert kl["switches"] == [3] and [e for e, _ in kl["series"]["fid"]] == [1, 2, 3, 4, 5]
    assert [v for _, v in kl["series"]["fid"]] == [9.0, 7.0, 8.0, 6.0, 5.0]  # the child continues its parent's curve
    assert "FID (evaluation classifier)" in drawn["panels"] and "Wasserstein estimate" not in drawn["panels"]
    result = cli("plot", child, "-o", tmp_path / "curves.svg")
    assert result.exit_code == 0 and (tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")
    result = cli("plot", child, "--grids", "-o", tmp_path / "evolution.gif")
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "evolution.gif").n_frames == 2
    result = cli("plot", child, "-o", tmp_path / "curves.jpg")
    assert result.exit_code == 1 and ".png, .svg, .pdf" in result.stderr


def test_runs_lists_finished_interrupted_diverged_and_running(cli, tmp_path):
    root = tmp_path / "runs"
    train(new_state(tiny_config(epochs=1)), synthetic_images(), root / "finished")

    def ctrl_c(state, scalars):
        if state.epoch == 1 and state.batch_in_epoch == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(new_state(tiny_config(epochs=2)), synthetic_images(), root / "interrupted", on_step=ctrl_c)

    def poison(state, scalars):  # a parameter turned NaN: the next step's loss is not finite
        if state.epoch == 1:
            with torch.no_grad():
                next(state.D.parameters()).fill_(float("nan"))

    with pytest.raises(GancliError, match="training diverged"):
        train(new_state(tiny_config(epochs=2)), synthetic_images(), root / "diverged", on_step=poison)
    seen = {}
    train(new_state(tiny_config(epochs=1)), synthetic_images(), root / "running",
          on_epoch=lambda state, record: seen.update(run_summary(root / "running")))
    assert seen["status"] == "running"
    result = cli("runs", root, "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {name: r["status"] for name, r in rows.items()} == {
        "diverged": "diverged", "finished": "finished", "interrupted": "interrupted", "running": "finished"}
    assert (rows["interrupted"]["epochs"], rows["interrupted"]["configured_epochs"]) == (1, 2)
    assert rows["finished"]["objective"] == "vanilla" and "z_dim=8" in rows["finished"]["knobs"]
    # a diverged run that is resumed and saves an epoch is no longer reported as diverged
    resumed = resume_run(root / "diverged" / "checkpoint.safetensors")
    train(resumed.state, synthetic_images(), resumed.run)
    assert run_summary(root / "diverged")["status"] == "finished"
    result = cli("runs", root)
    assert result.exit_code == 0 and "interrupted" in result.stdout and "1/2" in result.stdout
    assert cli("runs", tmp_path / "nowhere").exit_code == 1
    assert [r["name"] for r in list_runs(root)] == sorted(rows)


def test_eval_plot_runs_and_best_sampling_pipeline(tmp_path):
    """The shell session a user would type, on a synthetic MNIST with a test split."""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = synthetic_images(256, side=28, seed=len(split)).squeeze(1).numpy()
        write_idx(tmp_path / "mnist" / "mnist", f"{prefix}-images-idx3-ubyte", images)  # GANCLI_DATA's mnist/
    tiny = " ".join(TINY)
    result = shell(f"gan train vanilla --epochs 3 --eval-n 128 {tiny} --name v 2> train.log && gan runs --json > runs.json && "
                   "gan plot -o curves.png && gan sample --best -n 128 | gan score --features mnist --json > score.json",
                   cwd=tmp_path, env={"GANCLI_DATA": str(tmp_path / "mnist")})
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert (tmp_path / "train.log").read_text().count("FID ") == 3
    (run,) = json.loads((tmp_path / "runs.json").read_text())
    assert run["status"] == "finished" and run["best_fid_epoch"] in (1, 2, 3)
    assert run["best_fid"] == min(r["fid"] for r in logged(tmp_path / "runs" / "v"))
    assert Image.open(tmp_path / "curves.png").size[0] >= 800
    assert json.loads((tmp_path / "score.json").read_text())["n_generated"] == 128
