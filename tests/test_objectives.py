"""Every objective trains; the guard, WGAN clipping, gradient penalty and mode seeking do what they say."""

import json

import pytest
import torch

from gancli import checkpoint as ckpt
from gancli import losses
from gancli.config import DIVERGENCES, make_config
from gancli.errors import GancliError
from gancli.training import _grad_norm, new_state, train
from tests.conftest import TINY, synthetic_images

SMALL = dict(z_dim=8, g_hidden=(32,), d_hidden=(32,), batch_size=16, image_shape=(1, 8, 8), epochs=1)
OBJECTIVES = (
    [("vanilla", {}), ("vanilla", {"g_loss": "minimax"}), ("wgan", {}), ("wgan-gp", {}),
     ("wgan-gp", {"arch": "dcgan", "conv_width": 4}), ("vanilla", {"ms_lambda": 0.05, "d_dropout": 0.3}),
     ("fgan", {"div": "kl", "optimizer": "sgd", "lr": 1e-3}), ("fgan", {"div": "js", "precision": "bf16"})]
    + [("fgan", {"div": d}) for d in DIVERGENCES]
)


@pytest.mark.parametrize("objective, options", OBJECTIVES, ids=lambda x: x if isinstance(x, str) else ",".join(f"{k}={v}" for k, v in x.items()))
def test_every_objective_trains_an_epoch_with_finite_values(tmp_path, objective, options):
    options = dict(options)
    if "lr" in options:
        options["lr_d"] = options["lr_g"] = options.pop("lr")
    state = new_state(make_config(objective, **{**SMALL, **options}))
    train(state, synthetic_images(), tmp_path)
    record = json.loads((tmp_path / "log.jsonl").read_text())
    assert all(torch.isfinite(p).all() for p in list(state.G.parameters()) + list(state.D.parameters()))
    for key in ("d_loss", "g_loss", "grad_norm_d", "grad_norm_g"):
        assert key in record and record[key] == record[key] and abs(record[key]) < float("inf")
    if objective.startswith("wgan"):
        assert "wasserstein" in record


def blow_up_discriminator(state):
    with torch.no_grad():
        next(state.D.parameters()).mul_(1e30)


def test_guard_stops_on_an_exploding_step_and_keeps_the_last_checkpoint(tmp_path):
    state = new_state(make_config("fgan", div="kl", **{**SMALL, "epochs": 3}))
    images = synthetic_images()

    def explode(state, scalars):
        if state.epoch == 1 and state.batch_in_epoch == 3:
            blow_up_discriminator(state)

    with pytest.raises(GancliError) as err:
        train(state, images, tmp_path, on_step=explode)
    message = str(err.value)
    assert "diverged at epoch 2" in message and "JS pre-training" in message and "--clip-grad-norm" in message
    tensors, meta = ckpt.read_file(tmp_path / "checkpoint.safetensors", "gan")
    assert meta["epoch"] == 1 and all(torch.isfinite(t.float()).all() for t in tensors.values())
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 1
    assert f"(epoch 1) is {tmp_path / 'checkpoint.safetensors'}" in message


def test_guard_in_a_switched_runs_first_epoch_points_to_its_parent(tmp_path):
    state = new_state(make_config("fgan", div="kl", **{**SMALL, "epochs": 3}))
    state.epoch, state.parent = 2, str(tmp_path / "js" / "checkpoint.safetensors")
    with pytest.raises(GancliError) as err:
        train(state, synthetic_images(), tmp_path / "kl", on_step=lambda state, scalars: blow_up_discriminator(state))
    assert f"the last good checkpoint (epoch 2) is {state.parent}" in str(err.value)
    assert not (tmp_path / "kl" / "checkpoint.safetensors").exists()


def test_wgan_clips_critic_weights(tmp_path):
    state = new_state(make_config("wgan", **SMALL))
    train(state, synthetic_images(), tmp_path)
    assert max(p.abs().max().item() for p in state.D.parameters()) <= 0.01


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = w.x has gradient w everywhere: penalty (||w|| - 1)^2."""
    for norm, expected in ((1.0, 0.0), (3.0, 4.0)):
        w = torch.zeros(1, 1, 2, 2)
        w.view(-1)[0] = norm
        critic = lambda x: (x * w).flatten(1).sum(1)
        real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
        penalty = losses.gradient_penalty(critic, real, fake, torch.rand(5, 1, 1, 1))
        assert penalty.item() == pytest.approx(expected, abs=1e-6)


def test_mode_seeking_term_and_schedule():
    z1, z2 = torch.zeros(4, 3), torch.ones(4, 3)
    fake1, fake2 = torch.zeros(4, 2), torch.full((4, 2), 0.5)
    assert losses.mode_seeking(fake1, fake2, z1, z2).item() == pytest.approx(1 / (0.5 + 1e-5))
    config = make_config("vanilla", ms_lambda=0.05, ms_step=0.01, ms_every=10)
    assert [config.ms_lambda_at(e) for e in (0, 9, 10, 25)] == pytest.approx([0.05, 0.05, 0.06, 0.07])


def test_clip_grad_norm_rescales_only_at_or_above_c():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert _grad_norm([p], 10.0) == pytest.approx(5.0) and torch.equal(p.grad, torch.tensor([3.0, 4.0]))
    assert _grad_norm([p], 1.0) == pytest.approx(5.0)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.8]))


def test_objective_defaults_follow_the_papers():
    assert make_config("vanilla").betas == (0.5, 0.999) and make_config("fgan").lr_d == 2e-4
    wgan = make_config("wgan")
    assert (wgan.optimizer, wgan.lr_d, wgan.n_critic, wgan.clip_weights) == ("rmsprop", 5e-5, 5, 0.01)
    gp = make_config("wgan-gp")
    assert (gp.lr_d, gp.betas, gp.n_critic, gp.gp_lambda) == (1e-4, (0.0, 0.9), 5, 10.0)


def test_pretrain_then_resume_with_kl_starts_a_child_run(gan, tmp_path, tiny_data):
    gan("pretrain", "--data", tiny_data, *TINY, "--epochs", "2", "--name", "js", check=0)
    parent = tmp_path / "runs/js/checkpoint.safetensors"
    before = parent.read_bytes()
    result = gan("resume", "--div", "kl", "--epochs", "1", "--name", "kl", "--clip-grad-norm", "1", check=0)
    err = result.stderr.decode()
    assert "switched fgan-js -> fgan-kl" in err and "kept the optimizer moments" in err
    assert parent.read_bytes() == before  # the pre-trained checkpoint stays untouched
    _, meta = ckpt.read_file(tmp_path / "runs/kl/checkpoint.safetensors", "gan")
    assert meta["parent"] == "runs/js/checkpoint.safetensors" or meta["parent"].endswith("runs/js/checkpoint.safetensors")
    assert meta["config"]["div"] == "kl" and meta["epoch"] == 3 and meta["config"]["clip_grad_norm"] == 1
    assert (tmp_path / "runs/latest").resolve().name == "kl"
    reset = gan("resume", "runs/js", "--div", "pearson", "--epochs", "1", "--reset-optimizer", check=0)
    assert "dropped" in reset.stderr.decode()
