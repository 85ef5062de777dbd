"""The resume rules (resuming.resume_run), through the CLI in-process and through the library."""

import shutil
import signal

import pytest

from gancli import checkpoint as ckpt
from gancli.cli import app
from gancli.errors import TrainingInterrupted
from gancli.inference import open_checkpoint
from gancli.resuming import resume_run
from gancli.runs import read_log
from gancli.state import new_state
from gancli.training import train
from tests.conftest import TINY, synthetic_images, tiny_config


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def epochs_logged(run):
    return [r["epoch"] for r in read_log(run)]


def one_line_error(result, needle):
    assert result.exit_code == 1, result.stderr
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr


@pytest.fixture
def trained(cli, tiny_data):
    """`train NAME OBJECTIVE [OPTIONS]`: a tiny run of 1 epoch (unless told) in ./runs."""

    def run(name, objective="vanilla", *options):
        result = cli("train", objective, "--data", tiny_data, *TINY, "--epochs", "1", "--name", name, *options)
        assert result.exit_code == 0, result.stderr

    return run


def test_a_locked_field_is_refused_and_the_run_stays_loadable(cli, trained, tmp_path):
    trained("a", "vanilla")
    before = snapshot(tmp_path / "runs/a")
    for option, value in (("--d-dropout", "0.3"), ("--seed", "5"), ("--z-dim", "4"), ("--arch", "dcgan"),
                          ("--d-arch", "infogan")):
        one_line_error(cli("resume", "runs/a", option, value), f"cannot change {option[2:].replace('-', '_')} on resume")
    assert snapshot(tmp_path / "runs/a") == before
    assert cli("resume", "runs/a", "--d-dropout", "0", "--seed", "0", "--d-arch", "mlp", "--device", "cpu").exit_code == 0  # same values
    open_checkpoint(tmp_path / "runs/a/checkpoint.safetensors", "cpu")


def test_a_child_run_lives_beside_its_parent_and_becomes_latest(cli, trained, tmp_path, monkeypatch):
    trained("js", "fgan")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("resume", tmp_path / "runs/js/checkpoint.safetensors", "--div", "kl", "--name", "kl", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert not (elsewhere / "runs").exists()
    assert (tmp_path / "runs/latest").resolve() == tmp_path / "runs/kl"
    _, meta = ckpt.read_file(tmp_path / "runs/kl/checkpoint.safetensors", "gan")
    assert meta["parent"] == str(tmp_path / "runs/js/checkpoint.safetensors") and meta["epoch"] == 2


def test_latest_moves_only_once_a_run_has_saved_an_epoch(cli, trained, tmp_path, tiny_data):
    trained("a")
    result = cli("train", "vanilla", "--data", tiny_data, *TINY[:-4], "--batch-size", "500", "--name", "b")
    one_line_error(result, "fewer than one batch")
    assert (tmp_path / "runs/latest").resolve().name == "a"
    assert not (tmp_path / "runs/b").exists()  # a run that saved nothing leaves nothing behind
    assert cli("resume", "--device", "cpu").exit_code == 0  # the default checkpoint still works


def test_a_switch_from_a_ctrl_c_checkpoint_continues_at_the_same_step(tmp_path):
    images = synthetic_images()  # 128 images, batches of 16: 8 steps an epoch

    def ctrl_c_in_epoch_2(state, scalars):
        if state.epoch == 1 and state.batch_in_epoch == 3:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted):
        train(new_state(tiny_config("fgan", div="js", epochs=3)), images, tmp_path / "runs/js", on_step=ctrl_c_in_epoch_2)
    _, meta = ckpt.read_file(tmp_path / "runs/js/checkpoint.safetensors", "gan")
    assert (meta["epoch"], meta["batch_in_epoch"], meta["step"]) == (1, 3, 11)
    resumed = resume_run(tmp_path / "runs/js/checkpoint.safetensors", {"div": "kl"}, until_epoch=3, name="kl")
    assert resumed.switched and resumed.child and resumed.run == tmp_path / "runs/kl"
    assert (resumed.state.epoch, resumed.state.batch_in_epoch, resumed.state.step) == (1, 3, 11)
    assert any("batch 3 of epoch 2" in note for note in resumed.notes)
    state = train(resumed.state, images, resumed.run)
    assert state.step == 3 * 8  # no step trained twice, none skipped
    assert epochs_logged(resumed.run) == [2, 3]


def test_alpha_switches_only_the_alpha_divergence(cli, trained):
    trained("js", "fgan")
    one_line_error(cli("resume", "runs/js", "--alpha", "0.3"), "--alpha applies to --div alpha, not fgan-js")
    switched = cli("resume", "runs/js", "--div", "alpha", "--alpha", "0.3", "--name", "a03", "--device", "cpu")
    assert switched.exit_code == 0 and "switched fgan-js -> fgan-alpha0.3" in switched.stderr
    same = cli("resume", "runs/a03", "--alpha", "0.3", "--device", "cpu")
    assert same.exit_code == 0 and "switched" not in same.stderr
    other = cli("resume", "runs/a03", "--alpha", "2", "--name", "a2", "--device", "cpu")
    assert other.exit_code == 0 and "switched fgan-alpha0.3 -> fgan-alpha2" in other.stderr
    one_line_error(cli("train", "vanilla", "--alpha", "0.3"), "--alpha applies to --div alpha")


def test_resuming_another_checkpoint_file_never_overwrites_it(cli, trained, tmp_path):
    trained("a")
    shutil.copy(tmp_path / "runs/a/checkpoint.safetensors", tmp_path / "runs/a/snapshot.safetensors")
    before = snapshot(tmp_path / "runs/a")
    result = cli("resume", "runs/a/snapshot.safetensors", "--name", "from-snapshot", "--device", "cpu")
    assert result.exit_code == 0 and "not a run's latest checkpoint" in result.stderr
    assert snapshot(tmp_path / "runs/a") == before
    _, meta = ckpt.read_file(tmp_path / "runs/from-snapshot/checkpoint.safetensors", "gan")
    assert meta["parent"] == "runs/a/snapshot.safetensors" and meta["epoch"] == 2


def test_epochs_means_more_and_until_epoch_a_total(cli, trained, tmp_path):
    trained("a")
    assert cli("resume", "runs/a", "--epochs", "2", "--device", "cpu").exit_code == 0
    assert cli("resume", "runs/a", "--until-epoch", "5", "--device", "cpu").exit_code == 0
    assert epochs_logged(tmp_path / "runs/a") == [1, 2, 3, 4, 5]
    one_line_error(cli("resume", "runs/a", "--until-epoch", "4"), "has completed 5 epochs already")
    one_line_error(cli("resume", "runs/a", "--epochs", "1", "--until-epoch", "9"), "exclude each other")
    one_line_error(cli("resume", "runs/a", "--name", "x"), "continues runs/a in place")
    assert cli("resume", "runs/a", "--device", "cpu").exit_code == 0  # finished: as many again (5)
    assert epochs_logged(tmp_path / "runs/a")[-1] == 10


def test_an_option_shared_by_commands_has_one_definition():
    """Same flag, same help everywhere, except the flags that mean several things (named here)."""
    import typer.main

    outputs = ("samples", "interpolate's picture", "plot's figure", "calibrate's checkpoint", "export's generator")
    meanings = {"--seed": ("a run's seed", "a latent seed"), "--batch-size": ("a training step", "a network pass"),
                "--precision": ("training numerics", "the Inception's"), "--output": outputs, "-o": outputs,
                "-n": ("images to make", "images to compare", "images to calibrate on"),
                "--runs": ("where runs go", "gan tune's study folder"),
                "--class": ("the class sampled", "the class of every interpolated row")}
    helps: dict[str, set] = {}
    for command in typer.main.get_command(app).commands.values():
        for param in command.params:
            for flag in param.opts:
                helps.setdefault(flag, set()).add(param.help)
    for flag, texts in helps.items():
        assert len(texts) <= len(meanings.get(flag, ("one",))), (flag, texts)
