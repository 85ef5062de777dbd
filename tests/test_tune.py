"""`gan tune`: search spaces, trials as runs, pruning, storage that continues, workers, Ctrl-C."""

import json
import os
import shutil
import signal
import subprocess
import sys
import typing
from pathlib import Path

import optuna
import pytest

from gancli import tuning
from gancli.cli import tune as tune_cli
from gancli.errors import UsageError
from gancli.runs import read_log
from tests.conftest import assert_same_checkpoint, gan_env, shell, synthetic_images, write_idx

TINY_SPACE = """objective = "vanilla"
epochs = 3
z_dim = 8
g_hidden = [32]
d_hidden = [32]
eval_n = 64
"""


def space_text(search: str, fixed: str = TINY_SPACE) -> str:
    return fixed + "\n[search]\n" + search


@pytest.fixture
def mnist_dir(user_shell, monkeypatch) -> Path:
    """A synthetic MNIST (256 images a split) as GANCLI_DATA: every trial is evaluated per epoch on it."""
    data = user_shell / "data"
    for prefix, seed in (("train", 1), ("t10k", 2)):
        write_idx(data / "mnist", f"{prefix}-images-idx3-ubyte", synthetic_images(256, side=28, seed=seed).squeeze(1).numpy())
    monkeypatch.setenv("GANCLI_DATA", str(data))
    return data


def test_a_space_parses_with_ranges_choices_and_conditions():
    space = tuning.parse_space(space_text(
        'div = ["js", "kl", "alpha"]\nalpha = {low = -1.0, high = 3.0, when = {div = "alpha"}}\n'
        'lr = {low = 1e-5, high = 1e-3, log = true}\nbetas = [[0.5, 0.999], [0.0, 0.9]]\nn_critic = {low = 1, high = 5}\n',
        TINY_SPACE.replace('"vanilla"', '"fgan"')), "s.toml")
    params = {p.name: p for p in space.params}
    assert params["lr"].log and not params["lr"].integer and params["n_critic"].integer
    assert params["betas"].choices == ((0.5, 0.999), (0.0, 0.9)) and params["alpha"].when == (("div", ("alpha",)),)
    kl = tuning.suggest(optuna.trial.FixedTrial({"div": "kl", "lr": 1e-4, "betas": "0.0,0.9", "n_critic": 2}), space)
    assert "alpha" not in kl and kl["betas"] == (0.0, 0.9) and kl["n_critic"] == 2
    alpha = tuning.suggest(optuna.trial.FixedTrial({"div": "alpha", "alpha": 2.0, "lr": 1e-4, "betas": "0.5,0.999",
                                                    "n_critic": 1}), space)
    objective, fields = tuning.trial_config(alpha)
    assert objective == "fgan" and fields["alpha"] == 2.0 and fields["lr_d"] == fields["lr_g"] == 1e-4


@pytest.mark.parametrize("search, said", [
    ("lr = 0.1\n", "a list of choices or a table"),
    ('div = {low = 1, high = 2}\n', "div takes a list of choices"),
    ("lr = {low = 1e-3, high = 1e-4}\n", "low < high"),
    ("d_weight_decay = {low = 0.0, high = 1e-3, log = true}\n", "low > 0 with log"),
    ("ema = [0.9, 1.5]\n", "[search] ema: ema = 1.5: --ema is a decay"),
    ('sync_batch_norm = [true, false]\n', "--sync-batch-norm applies to the conv generators"),
    ("lrr = [0.1, 0.2]\n", "unknown key 'lrr'"),
    ("alpha = {low = 0.5, high = 2.0, when = {divv = \"alpha\"}}\n", "when names divv, which is neither fixed nor"),
    ('alpha = {low = 0.5, high = 2.0, when = {div = "alpha"}}\ndiv = ["js", "alpha"]\n', "neither fixed nor searched above"),
    ('div = ["js", "kl"]\nalpha = {low = 0.5, high = 2.0, when = {div = "alpha"}}\n', "'alpha' is not one of div's choices"),
    ('r1 = {low = 0.5, high = 2.0, when = {objective = "fgan"}}\n', "never searched"),
    ("n_critic = {low = 1, high = 5, step = 0.5}\n", "step = 0.5: a step is a number above 0, whole"),
    ("lr = {low = 1e-4, high = 1e-3, step = 0.0}\n", "a step is a number above 0"),
    ('lr = {low = 1e-4, high = 1e-3, log = "no"}\n', "log is true or false"),
    ("n_critic = {low = 1.5, high = 5}\n", "n_critic = 1.5 is a float"),
    ("epochs = [1, 2]\n", "epochs is both fixed and searched"),
    ("ema = [0.9]\n", "at least two values"),
    ("lr = {low = 1e-4, high = 1e-3, lg = true}\n", "unknown key 'lg'"),
])
def test_bad_spaces_are_refused_naming_the_key(search, said):
    with pytest.raises(UsageError) as refused:
        tuning.parse_space(space_text(search), "s.toml")
    assert said in refused.value.message


def test_a_space_needs_a_search_an_objective_and_an_evaluated_dataset():
    with pytest.raises(UsageError, match="no \\[search\\] table"):
        tuning.parse_space(TINY_SPACE, "s.toml")
    with pytest.raises(UsageError, match="names no objective"):
        tuning.parse_space("epochs = 2\n[search]\nema = [0.0, 0.9]\n", "s.toml")
    with pytest.raises(UsageError, match="kmnist has no evaluation"):
        tuning.check_evaluated(tuning.Space({"objective": "vanilla", "data": "kmnist"}, (), ""))


def test_the_clis_choices_are_the_tuners():
    assert typing.get_args(tune_cli.SAMPLER) == tuning.SAMPLERS and typing.get_args(tune_cli.PRUNER) == tuning.PRUNERS
    assert typing.get_args(tune_cli.TARGET) == tuning.TARGETS


def settings_for(root: Path, trials: int, **options) -> tuning.Settings:
    runs = root / "runs" / "s"
    return tuning.Settings(study="s", runs=runs, storage=tuning.default_storage(runs), trials=trials, device="cpu",
                           **options)


def test_the_pruner_stops_a_bad_trial_and_a_diverging_one_is_a_result(mnist_dir, user_shell):
    """Trials enqueued in order: two good ones, one that cannot learn (lr_g 10 saturates G: its FID
    stays far above the median) and one that diverges (KL's exp-shaped conjugate at lr_d 10, no R1),
    which also searches a conditional option (div, for fgan only)."""
    space = tuning.parse_space(space_text(
        'objective = ["vanilla", "fgan"]\ndiv = {choices = ["kl", "js"], when = {objective = "fgan"}}\n'
        "lr_g = [1e-3, 10.0]\nlr_d = [2e-4, 10.0]\n", TINY_SPACE.replace('objective = "vanilla"', "r1 = 0.0")), "s.toml")
    settings = settings_for(user_shell, 4, sampler="random", startup_trials=2, warmup_epochs=0)
    study = tuning.load_study(settings, space)
    good = {"objective": "vanilla", "lr_g": 1e-3, "lr_d": 2e-4}
    for params in (good, good, good | {"lr_g": 10.0}, {"objective": "fgan", "div": "kl", "lr_g": 1e-3, "lr_d": 10.0}):
        study.enqueue_trial(params)
    result = tuning.run_study(space, settings, notify=lambda message: None)
    states = [t["state"] for t in result["trials"]]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    pruned, failed = result["trials"][2], result["trials"][3]
    assert pruned["epochs"] == 1 and "the median pruner stopped it" in pruned["reason"]  # stopped after its first evaluation
    assert "diverged" in failed["reason"] and failed["value"] is None and failed["params"]["div"] == "kl"
    assert "div" not in result["trials"][0]["params"]
    assert result["best"]["number"] in (0, 1) and Path(result["best"]["config"]).is_file()


def test_a_study_continues_to_n_trials_in_all_on_two_workers_and_best_toml_reruns_the_best(mnist_dir, user_shell):
    """2 trials, then `--trials 4 --workers 2`: 2 more at once, each its own trial number and run."""
    space = user_shell / "space.toml"
    space.write_text(space_text("lr = {low = 1e-4, high = 3e-3, log = true}\nema = [0.0, 0.9]\n"))
    data = {"GANCLI_DATA": str(mnist_dir)}
    first = shell("gan tune space.toml --trials 2 --sampler random --device cpu", user_shell, data)
    assert first.returncode == 0, first.stderr.decode()
    again = shell("gan tune space.toml --trials 4 --workers 2 --sampler random --device cpu --json", user_shell, data)
    assert again.returncode == 0, again.stderr.decode()
    result = json.loads(again.stdout)
    trials = result["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3] and again.stderr.decode().count(": COMPLETE") == 2
    assert len({t["params"]["lr"] for t in trials}) == 4  # the continued study draws new options
    assert result["study"] == "space" and result["storage"].endswith("runs/space/tune.db")
    for t in trials:  # each run trained once, by one process: its epochs logged once each
        assert t["state"] == "COMPLETE" and [r["epoch"] for r in read_log(Path(t["run"]))] == [1, 2, 3]
    best = result["best"]
    assert best["value"] == min(t["value"] for t in trials) and (user_shell / "runs/space/tune.png").is_file()
    rerun = shell(f"OMP_NUM_THREADS={best['threads']} gan train --config {best['config']} --device cpu --name again && "
                  f"gan tune --show --study space --runs runs/space --json", user_shell, data)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert_same_checkpoint(Path(best["run"]) / "checkpoint.safetensors", user_shell / "runs/again/checkpoint.safetensors")
    assert json.loads(rerun.stdout.decode().splitlines()[-1])["trials"] == trials
    listed = shell("gan runs runs/space --json", user_shell)
    assert [r["name"] for r in json.loads(listed.stdout)] == [f"trial-000{i}" for i in range(4)]
    other = user_shell / "other.toml"
    other.write_text(space_text("ema = [0.0, 0.99]\n"))
    refused = shell("gan tune other.toml --study space --trials 5", user_shell, data)
    assert refused.returncode == 1 and b"created with another space" in refused.stderr


def test_a_trial_stores_the_precision_auto_resolved_to_not_auto(mnist_dir, user_shell):
    """A trial's stored config is what BEST.toml is written from where its run is gone and what a run
    trained again starts from: auto in it would train other numerics on a CPU that resolves it otherwise.
    (The trial's worker is a process of its own, resolving auto on this machine as this one does.)"""
    from gancli.inference import resolve_precision

    space = tuning.parse_space(space_text("lr = [1e-3, 2e-3]\n", TINY_SPACE.replace("epochs = 3", "epochs = 1")
                                          + 'precision = "auto"\n'), "s.toml")
    settings = settings_for(user_shell, 1, sampler="random")
    assert tuning.run_study(space, settings, notify=lambda message: None)["trials"][0]["state"] == "COMPLETE"
    stored = tuning.load_study(settings, None).trials[0].user_attrs["config"]
    assert f'precision = "{resolve_precision("auto", "cpu")}"' in stored.splitlines()


# a terminal's Ctrl-C; Slurm's time limit, then the trial's run lost (a fresh clone of a committed study)
@pytest.mark.parametrize("stop, lose_run", [(signal.SIGINT, False), (signal.SIGTERM, True)])
def test_ctrl_c_saves_the_running_trial_and_the_next_tune_resumes_it(mnist_dir, user_shell, stop, lose_run):
    space, epochs = user_shell / "space.toml", 40  # the interrupted trial's
    space.write_text(space_text("ema = [0.0, 0.9]\n", TINY_SPACE.replace("epochs = 3", f"epochs = {epochs}")))
    command = [sys.executable, "-m", "gancli", "tune", "space.toml", "--trials", "1", "--device", "cpu"]
    # SIGINT as a terminal's: a suite started in the background (`... &`) would hand its ignored SIGINT down
    process = subprocess.Popen(command, cwd=user_shell, env=gan_env(user_shell, GANCLI_DATA=str(mnist_dir)),
                               stderr=subprocess.PIPE, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    while f"epoch 2/{epochs}".encode() not in seen:
        line = process.stderr.readline()
        assert line, seen.decode()
        seen += line
    os.killpg(process.pid, stop)  # to the coordinator's process group, as a terminal or Slurm sends it
    # (epochs of a few hundred milliseconds each: the signal lands long before the trial could end on a
    # loaded machine)
    process.stderr.read()
    assert process.wait(timeout=60) == 130
    run = user_shell / "runs/space/trial-0000"
    done = len(read_log(run))
    assert 2 <= done < epochs and (run / "checkpoint.safetensors").is_file()
    if lose_run:
        shutil.rmtree(run)  # trained again from its first epoch, whose FIDs Optuna already has
    again = subprocess.run(command + ["--json"], cwd=user_shell, env=gan_env(user_shell, GANCLI_DATA=str(mnist_dir)),
                           capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()
    assert b"interrupted before, resumed" in again.stderr and b"already reported" not in again.stderr
    trials = json.loads(again.stdout)["trials"]
    assert [(t["number"], t["state"], t["epochs"]) for t in trials] == [(0, "COMPLETE", epochs)]
    assert [r["epoch"] for r in read_log(run)] == list(range(1, epochs + 1))


def test_show_without_a_study_and_a_missing_space_are_one_line_errors(cli, user_shell):
    (user_shell / "space.toml").write_text(space_text("ema = [0.0, 0.9]\n"))
    fresh = cli("tune", "space.toml", "--show", "--target", "best")
    assert fresh.exit_code == 1 and "no study storage" in fresh.stderr and not Path("runs").exists()  # reports create nothing
    assert cli("tune", "space.toml", "--trials", "1", "--plot", "tune.jpg").exit_code == 2  # refused before any trial
    assert not Path("runs").exists()
    result = cli("tune", "--show", "--study", "nothing", "--runs", "nowhere")
    assert result.exit_code == 1 and "no study storage at" in result.stderr and "nowhere/tune.db" in result.stderr
    assert not Path("nowhere").exists()
    assert cli("tune").exit_code == 2
    assert cli("tune", "missing.toml").exit_code == 2


def test_gan_help_imports_no_optuna():
    probe = "import sys, gancli.cli; print('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
