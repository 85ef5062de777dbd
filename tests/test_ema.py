"""The moving average of the generator's weights (--ema): its update, its warm-up, resume, and who samples from it."""

import torch

from gancli import checkpoint as ckpt
from gancli.models import to_uint8, to_unit_range
from gancli.resuming import resume_run
from gancli.state import new_state
from gancli.training import ema_decay, train, train_step
from tests.conftest import synthetic_images, tiny_config


def weights(net):
    return [p.detach().clone() for p in net.parameters()]


def test_ema_update_follows_its_warm_up():
    state = new_state(tiny_config(ema=0.5))
    batches = to_unit_range(synthetic_images(32)).split(16)
    averaged = weights(state.G)
    for t, batch in enumerate(batches):
        train_step(state, batch, 0.0)
        decay = min(0.5, (1 + t) / (10 + t))  # 0.1, then 2/11: early steps are not frozen at initialisation
        averaged = [decay * a + (1 - decay) * g for a, g in zip(averaged, weights(state.G), strict=True)]
        assert all(torch.allclose(a, e, atol=1e-7) for a, e in zip(weights(state.G_ema), averaged, strict=True))
    assert state.ema_updates == 2 and ema_decay(0.999, 10_000) == 0.999


def test_ema_changes_nothing_that_trains_and_resumes_bit_exactly(tmp_path):
    images = synthetic_images()
    with_ema = train(new_state(tiny_config(epochs=2, ema=0.9)), images, tmp_path / "a")
    without = train(new_state(tiny_config(epochs=2, ema=0.0)), images, tmp_path / "b")
    assert all(torch.equal(a, b) for a, b in zip(weights(with_ema.G), weights(without.G), strict=True))
    train(new_state(tiny_config(epochs=1, ema=0.9)), images, tmp_path / "c")
    resumed = resume_run(tmp_path / "c" / "checkpoint.safetensors", epochs=1)
    assert resumed.state.ema_updates == 8  # 128 images, batches of 16
    state = train(resumed.state, images, resumed.run)
    assert state.ema_updates == with_ema.ema_updates == 16
    assert all(torch.equal(a, b) for a, b in zip(weights(state.G_ema), weights(with_ema.G_ema), strict=True))
    tensors, _ = ckpt.read_file(tmp_path / "c" / "checkpoint.safetensors", "gan")
    assert torch.equal(tensors["G_ema.net.0.weight"], with_ema.G_ema.state_dict()["net.0.weight"])


def test_ema_turned_on_at_resume_starts_from_the_current_generator(tmp_path):
    train(new_state(tiny_config(epochs=1, ema=0.0)), synthetic_images(), tmp_path / "r")
    resumed = resume_run(tmp_path / "r" / "checkpoint.safetensors", {"ema": 0.99}, epochs=1)
    assert any("moving average (--ema) starts now" in note for note in resumed.notes)
    assert resumed.state.ema_updates == 0
    assert all(torch.equal(a, b) for a, b in zip(weights(resumed.state.G_ema), weights(resumed.state.G), strict=True))
    train(resumed.state, synthetic_images(), resumed.run)
    dropped = resume_run(tmp_path / "r" / "checkpoint.safetensors", {"ema": 0.0}, epochs=1)
    assert dropped.state.G_ema is None and any("dropped" in note for note in dropped.notes)


def test_sample_uses_the_average_unless_raw_generator(cli, tmp_path):
    state = train(new_state(tiny_config(epochs=1, ema=0.9)), synthetic_images(), tmp_path / "r")
    for generator, flags in ((state.G_ema, []), (state.G, ["--raw-generator"])):
        result = cli("sample", tmp_path / "r", "-n", "16", "-o", tmp_path / "s.safetensors", "--device", "cpu", *flags)
        assert result.exit_code == 0, result.stderr
        samples, _ = ckpt.read_file(tmp_path / "s.safetensors", "samples")
        with torch.no_grad():
            assert torch.equal(to_uint8(generator.eval()(samples["z"])), samples["images"]), flags
        (tmp_path / "s.safetensors").unlink()
    assert not all(torch.equal(a, b) for a, b in zip(weights(state.G), weights(state.G_ema), strict=True))


def test_evaluation_and_grids_use_the_average(tmp_path):
    seen = []
    state = train(new_state(tiny_config(epochs=1, ema=0.9, eval_every=1)), synthetic_images(), tmp_path / "r",
                  evaluate=lambda G: seen.append(G) or {"fid": 1.0})
    assert seen == [state.G_ema]


def test_a_new_run_keeps_the_average_by_default_and_ema_0_gives_the_plain_generator(cli, tmp_path):
    from gancli.checkpoint import read_header
    from gancli.config import TrainConfig, make_config

    assert all(make_config(objective).ema == 0.999 for objective in ("vanilla", "fgan", "wgan", "wgan-gp"))
    assert make_config("vanilla", ema=0.0).ema == 0.0
    train(new_state(tiny_config()), synthetic_images(), tmp_path / "r")
    stored = read_header(tmp_path / "r" / "checkpoint.safetensors").config.to_dict()
    assert stored["ema"] == 0.999
    del stored["ema"]  # a checkpoint written before the field: no average
    assert TrainConfig.from_dict(stored).ema == 0.0
    assert "[default: 0.999]" in " ".join(cli("train", "--help").stdout.split())
