"""Runs from a config file: `gan train --config FILE.toml` and `gan config RUN`, which prints a run's own."""

import dataclasses

import pytest

from gancli.config import config_fields_from_toml, config_toml, make_config, other_objective
from gancli.errors import UsageError
from tests.conftest import TINY, assert_same_checkpoint, shell


@pytest.mark.parametrize("objective, options", [
    ("vanilla", {"ema": 0.999, "d_dropout": 0.3}), ("fgan", {"div": "alpha", "alpha": 2.0, "r1": 5.0}),
    ("fgan", {"div": "kl", "lr_decay": "cosine", "lr_floor": 0.1}), ("wgan-gp", {"betas": (0.0, 0.9), "arch": "dcgan"}),
    ("wgan", {"data": "fashion-mnist[:5000]", "g_hidden": (64, 128), "spectral_norm": True}),
    ("wgan-gp", {"arch": "dcgan", "sync_batch_norm": True, "data": "d\U0001f600/\"quoted\"\\x.safetensors"})])
def test_a_config_file_reads_back_into_the_same_config(objective, options):
    config = make_config(objective, **options)
    fields = config_fields_from_toml(config_toml(config), "x.toml")
    assert make_config(fields.pop("objective"), **fields) == config


@pytest.mark.parametrize("text, said", [
    ('objective = "vanilla"\nlr_gg = 1e-4\n', "unknown key 'lr_gg' (did you mean 'lr_g'?)"),
    ('ema = "high"\n', "ema = 'high' is a str, expected a value like 0.0"),
    ("lr = {low = 1e-4, high = 1e-3}\n", "is a table (a range goes under [search]"),
    ("sync_batch_norm = true\n", "sync_batch_norm = True: --sync-batch-norm applies to the conv generators (dcgan, infogan)"),
    ('arch = "dcgan"\nsync_batch_norm = true\nema = 1.5\n', "ema = 1.5: --ema is a decay"),
    ("epochs = 2.5\n", "epochs = 2.5 is a float"),
    ("g_hidden = [64, -1]\n", "g_hidden = (64, -1): network sizes must be positive"),
    ("ema = 1.5\n", "ema = 1.5: --ema is a decay in [0, 1)"),
    ('objective = "gan"\n', "objective = 'gan': unknown objective"),
    ("image_shape = [1, 8, 8]\n", "unknown key 'image_shape'"),
    ("epochs = \n", "x.toml is not TOML"),
])
def test_bad_config_files_are_refused_naming_the_key(text, said):
    with pytest.raises(UsageError) as refused:
        config_fields_from_toml(text, "x.toml")
    assert said in refused.value.message


def test_the_command_line_overrides_the_file_and_a_bad_file_is_a_usage_error(cli, tiny_data, tmp_path):
    (tmp_path / "recipe.toml").write_text(f'objective = "fgan"\ndiv = "kl"\nepochs = 3\nlr_d = 1e-3\ndata = "{tiny_data}"\n')
    result = cli("train", "--config", "recipe.toml", *TINY, "--epochs", "1", "--lr", "5e-4", "--name", "r")
    assert result.exit_code == 0, result.stderr
    shown = cli("config", "runs/r")
    assert shown.exit_code == 0, shown.stderr
    fields = config_fields_from_toml(shown.stdout, "stdout")
    assert (fields["objective"], fields["div"], fields["epochs"], fields["lr_d"], fields["lr_g"]) == ("fgan", "kl", 1, 5e-4, 5e-4)
    (tmp_path / "bad.toml").write_text("n_critic = 0\n")
    refused = cli("train", "vanilla", "--config", "bad.toml", "--data", tiny_data)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "bad.toml: n_critic = 0:" in refused.stderr
    missing = cli("train", "--data", tiny_data)
    assert missing.exit_code == 2 and "no objective" in missing.stderr
    assert cli("train", "--config", "nowhere.toml").exit_code == 2


def test_a_run_repeated_from_its_printed_config_is_bit_exact(user_shell, tiny_data):
    """The pipeline a user runs: train, print the run's config, train again from it through a pipe."""
    tiny = " ".join(TINY)
    result = shell(f"gan train fgan --div js --data {tiny_data} {tiny} --epochs 2 --ema 0.9 --d-dropout 0.2 --name a "
                   f"&& gan train --config <(gan config runs/a) --device cpu --name b && gan config runs/b", user_shell)
    assert result.returncode == 0, result.stderr.decode()
    assert_same_checkpoint(user_shell / "runs/a/checkpoint.safetensors", user_shell / "runs/b/checkpoint.safetensors")
    again = config_fields_from_toml(result.stdout.decode(), "stdout")
    assert again["d_dropout"] == 0.2 and again["ema"] == 0.9 and again["epochs"] == 2


def test_every_config_field_but_the_data_s_own_is_in_the_file():
    config = make_config("fgan", div="alpha")
    keys = set(config_fields_from_toml(config_toml(config), "x.toml"))
    assert keys == {f.name for f in dataclasses.fields(config)} - {"image_shape", "classes"}


def test_another_objective_over_a_file_takes_its_own_defaults_and_keeps_what_the_file_changed():
    fields = config_fields_from_toml(config_toml(make_config("fgan", div="kl", lr_d=1e-3, ema=0.99)), "x.toml")
    fields.pop("objective")
    kept, dropped = other_objective(fields, "fgan", "wgan")
    assert set(dropped) == {"div", "r1", "optimizer", "lr_g", "n_critic", "clip_weights"}  # lr_d: the file's own
    config = make_config("wgan", **kept)
    assert (config.optimizer, config.clip_weights, config.n_critic, config.r1, config.lr_g, config.lr_d, config.ema) == \
        ("rmsprop", 0.01, 5, 0.0, 5e-5, 1e-3, 0.99)
