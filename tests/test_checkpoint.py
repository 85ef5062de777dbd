import json

import pytest
import torch

from gancli import checkpoint as ckpt
from gancli.config import TrainConfig
from gancli.errors import GancliError
from gancli.training import load_state, new_state, save_state, train
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
    state2, notes = load_state(tmp_path / "checkpoint.safetensors")
    assert notes == [] and state2.config == config and state2.epoch == 1 and state2.step == state.step
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


def test_resume_refuses_locked_fields_and_accepts_their_same_value(tmp_path):
    state = new_state(tiny_config(epochs=0))
    save_state(tmp_path / "c.safetensors", state)
    for changes in ({"z_dim": 4}, {"d_dropout": 0.3}, {"seed": 5}):
        with pytest.raises(GancliError, match=f"cannot change {next(iter(changes))} on resume"):
            load_state(tmp_path / "c.safetensors", changes)
    assert load_state(tmp_path / "c.safetensors", {"z_dim": 8, "seed": 0})[0].config == state.config


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
