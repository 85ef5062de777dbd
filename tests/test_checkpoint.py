import json

import pytest
import torch

from gancli import checkpoint as ckpt
from gancli.config import TrainConfig
from gancli.errors import GancliError
from gancli.resuming import plan_resume
from gancli.state import new_state, restore_state, save_state
from gancli.training import train
from tests.conftest import synthetic_images, tiny_config


def test_encode_decode_round_trip_keeps_tensors_and_metadata():
    tensors = {"a": torch.arange(6, dtype=torch.float32).view(2, 3), "rng.x": torch.zeros(4, dtype=torch.uint8)}
    tensors_back, meta = ckpt.decode(ckpt.encode(tensors, {"kind": "gan", "epoch": 3}), "mem", "gan")
    assert meta["epoch"] == 3 and meta["schema"] == ckpt.SCHEMA and "version" in meta
    assert all(torch.equal(tensors[k], tensors_back[k]) for k in tensors)


def test_checkpoint_round_trip_restores_models_optimizers_and_rng(tmp_path):
    config = tiny_config("fgan", div="kl")
    state = new_state(config)
    train(state, synthetic_images(), tmp_path)
    record = ckpt.read_checkpoint(tmp_path / "checkpoint.safetensors")
    state2 = restore_state(record, "c", record.config, record.progress, parent=None, keep_optimizer=True)
    assert state2.config == config and state2.epoch == 1 and state2.step == state.step
    for a, b in ((state.G, state2.G), (state.D, state2.D)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    opt_a, opt_b = state.opt_d.state_dict(), state2.opt_d.state_dict()
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for k in opt_a["state"]:
        assert all(torch.equal(opt_a["state"][k][n], opt_b["state"][k][n]) for n in opt_a["state"][k])
    assert torch.equal(state.noise_rng.get_state(), state2.noise_rng.get_state())
    _, meta = ckpt.read_file(tmp_path / "checkpoint.safetensors", "gan")
    assert meta["kind"] == "gan" and meta["parent"] is None
    assert TrainConfig.from_dict(json.loads(json.dumps(meta["config"]))) == config


def test_the_checkpoint_record_round_trips_through_its_one_writer_and_reader(tmp_path):
    state = train(new_state(tiny_config(ema=0.9)), synthetic_images(), tmp_path)
    record = ckpt.read_checkpoint(tmp_path / "checkpoint.safetensors")
    ckpt.write_checkpoint(tmp_path / "again.safetensors", record)
    again = ckpt.read_checkpoint(tmp_path / "again.safetensors")
    assert again.header == record.header and again.progress.step == state.step and again.G_ema is not None
    assert all(torch.equal(record.G[k], again.G[k]) for k in record.G)
    assert ckpt.read_header(tmp_path / "again.safetensors") == record.header  # the torch-free reader agrees


def plan(old, changes, **facts):
    """plan_resume of a finished one-epoch run's checkpoint, on values alone: no file."""
    facts = {"origin": "runs/a/checkpoint.safetensors", "in_run": True, "has_ema": False} | facts
    return plan_resume(old, changes, ckpt.Progress(epoch=1, step=8), **facts)


def test_resume_refuses_locked_fields_and_accepts_their_same_value():
    old = tiny_config()
    for changes in ({"z_dim": 4}, {"d_dropout": 0.3}, {"seed": 5}):
        with pytest.raises(GancliError, match=f"cannot change {next(iter(changes))} on resume"):
            plan(old, changes)
    assert plan(old, {"z_dim": 8, "seed": 0}).config.z_dim == 8


def test_the_resume_rules_are_a_function_of_values():
    old = tiny_config(epochs=1, ema=0.0)
    same = plan(old, {})
    assert (same.child, same.switched, same.config.epochs, same.notes) == (False, False, 2, ())  # finished: as many again
    switched = plan(old, {"div": "kl"}, epochs=3)
    assert switched.switched and switched.child and switched.config.objective == "fgan" and switched.config.epochs == 4
    assert switched.progress.objective_start == 1 and switched.keep_optimizer
    assert any("switched vanilla -> fgan-kl at epoch 1" in note for note in switched.notes)
    copy = plan(old, {}, in_run=False)
    assert copy.child and not copy.switched and "not a run's latest checkpoint" in copy.notes[-1]
    fresh = plan(old, {"ema": 0.99, "optimizer": "rmsprop"})
    assert fresh.progress.ema_updates == 0 and not fresh.keep_optimizer and len(fresh.notes) == 2
    with pytest.raises(GancliError, match="middle of epoch 2"):
        plan_resume(old, {"batch_size": 8}, ckpt.Progress(epoch=1, step=9, batch_in_epoch=1), origin="c", in_run=True,
                    has_ema=False)
    with pytest.raises(GancliError, match="has completed 1 epochs already"):
        plan(old, {}, until_epoch=1)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"not a safetensors file at all", "not a readable safetensors"),
])
def test_corrupt_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(GancliError, match=message):
        ckpt.read_file(path, "gan")


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    save_state(tmp_path / "c.safetensors", new_state(tiny_config()))
    raw = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(GancliError, match="not a readable"):
        ckpt.read_file(tmp_path / "c.safetensors", "gan")


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    ckpt.atomic_write(path, b"old")

    def broken_fsync(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(ckpt.os, "fsync", broken_fsync)
    with pytest.raises(GancliError, match="cannot write .*f.bin: I/O error; the previous f.bin is unchanged"):
        ckpt.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left behind
