"""Every objective trains; the guard, WGAN clipping, gradient penalty and mode seeking do what they say."""

import dataclasses
from pathlib import Path

import pytest
import torch

from gancli import checkpoint as ckpt
from gancli import losses
from gancli.config import DIVERGENCES, make_config
from gancli.errors import GancliError
from gancli.models import SpectralNorm, to_unit_range
from gancli.resuming import resume_run
from gancli.runs import read_log
from gancli.state import new_state
from gancli.training import _grad_norm, train, train_step
from tests.conftest import TINY, synthetic_images, tiny_config

OBJECTIVES = (
    [("vanilla", {}), ("vanilla", {"g_loss": "minimax"}), ("wgan", {}), ("wgan-gp", {}),
     ("wgan-gp", {"arch": "dcgan", "conv_width": 4}), ("vanilla", {"ms_lambda": 0.05, "d_dropout": 0.3}),
     ("fgan", {"div": "kl", "optimizer": "sgd", "lr": 1e-3}), ("fgan", {"div": "js", "precision": "bf16"})]
    + [("fgan", {"div": d}) for d in DIVERGENCES]
)


@pytest.mark.parametrize("objective, options", OBJECTIVES,
                        ids=lambda x: x if isinstance(x, str) else ",".join(f"{k}={v}" for k, v in x.items()))
def test_every_objective_trains_an_epoch_with_finite_values(tmp_path, objective, options):
    options = dict(options)
    if "lr" in options:
        options["lr_d"] = options["lr_g"] = options.pop("lr")
    state = new_state(tiny_config(objective, **options))
    train(state, synthetic_images(), tmp_path)
    (record,) = read_log(tmp_path)
    assert all(torch.isfinite(p).all() for p in list(state.G.parameters()) + list(state.D.parameters()))
    for key in ("d_loss", "g_loss", "grad_norm_d", "grad_norm_g"):
        assert key in record and record[key] == record[key] and abs(record[key]) < float("inf")
    if objective.startswith("wgan"):
        assert "wasserstein" in record


# Hand-computed values at v_real = (0, 2), v_fake = (0, -1), with softplus(x) = log(1 + e^x):
# softplus(0) = log 2 = 0.6931472, softplus(-1) = 0.3132617, softplus(-2) = 0.1269280, softplus(1) = 1.3132617.
V_REAL, V_FAKE = torch.tensor([0.0, 2.0]), torch.tensor([0.0, -1.0])


def test_vanilla_losses_are_binary_cross_entropy_with_logits():
    config = make_config("vanilla")
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    # D: mean softplus(-v_real) + mean softplus(v_fake) = (0.6931472 + 0.1269280)/2 + (0.6931472 + 0.3132617)/2
    d = losses.d_loss(config, V_REAL, V_FAKE)
    assert d.item() == pytest.approx(0.9132420, abs=1e-6)
    assert d.item() == pytest.approx((bce(V_REAL, torch.ones(2)) + bce(V_FAKE, torch.zeros(2))).item(), abs=1e-6)
    # G, non-saturating: mean softplus(-v_fake) = (0.6931472 + 1.3132617)/2, the BCE of fakes labelled real
    g = losses.g_loss(config, V_FAKE)
    assert g.item() == pytest.approx(1.0032044, abs=1e-6) and g.item() == pytest.approx(bce(V_FAKE, torch.ones(2)).item())
    # G, minimax: -mean softplus(v_fake) = -(0.6931472 + 0.3132617)/2, minus D's loss on fakes
    minimax = losses.g_loss(make_config("vanilla", g_loss="minimax"), V_FAKE)
    assert minimax.item() == pytest.approx(-0.5032044, abs=1e-6)


def test_wasserstein_losses_have_the_critics_signs():
    config = make_config("wgan")
    # the critic maximises E[v_real] - E[v_fake] = 1 - (-0.5): its loss is the negation, -1.5
    assert losses.d_loss(config, V_REAL, V_FAKE).item() == pytest.approx(-1.5)
    # the generator maximises E[v_fake] = -0.5: its loss is 0.5
    assert losses.g_loss(config, V_FAKE).item() == pytest.approx(0.5)


def blow_up_discriminator(state):
    with torch.no_grad():
        next(state.D.parameters()).mul_(1e30)


def test_guard_stops_on_an_exploding_step_and_keeps_the_last_checkpoint(tmp_path):
    state = new_state(tiny_config("fgan", div="kl", epochs=3))
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
    assert len(read_log(tmp_path)) == 1
    assert f"(epoch 1) is {tmp_path / 'checkpoint.safetensors'}" in message


def test_guard_in_a_switched_runs_first_epoch_points_to_its_parent(tmp_path):
    state = new_state(tiny_config("fgan", div="kl", epochs=3))
    state.epoch, state.parent = 2, str(tmp_path / "js" / "checkpoint.safetensors")
    with pytest.raises(GancliError) as err:
        train(state, synthetic_images(), tmp_path / "kl", on_step=lambda state, scalars: blow_up_discriminator(state))
    assert f"the last good checkpoint (epoch 2) is {state.parent}" in str(err.value)
    assert not (tmp_path / "kl" / "checkpoint.safetensors").exists()


def test_wgan_clips_critic_weights(tmp_path):
    state = new_state(tiny_config("wgan"))
    train(state, synthetic_images(), tmp_path)
    assert max(p.abs().max().item() for p in state.D.parameters()) <= 0.01


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = w.x has gradient w everywhere: penalty (||w|| - 1)^2."""
    for norm, expected in ((1.0, 0.0), (3.0, 4.0)):
        w = torch.zeros(1, 1, 2, 2)
        w.view(-1)[0] = norm
        critic = lambda x, w=w: (x * w).flatten(1).sum(1)
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


def test_pretrain_then_resume_with_kl_starts_a_child_run(cli, tmp_path, tiny_data):
    assert cli("pretrain", "--data", tiny_data, *TINY, "--epochs", "2", "--name", "js").exit_code == 0
    parent = tmp_path / "runs/js/checkpoint.safetensors"
    before = parent.read_bytes()
    result = cli("resume", "--div", "kl", "--epochs", "1", "--name", "kl", "--clip-grad-norm", "1", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "switched fgan-js -> fgan-kl" in result.stderr and "kept the optimizer moments" in result.stderr
    assert parent.read_bytes() == before  # the pre-trained checkpoint stays untouched
    _, meta = ckpt.read_file(tmp_path / "runs/kl/checkpoint.safetensors", "gan")
    assert Path(meta["parent"]).resolve() == parent.resolve()  # the latest run, as found
    assert meta["config"]["div"] == "kl" and meta["epoch"] == 3 and meta["config"]["clip_grad_norm"] == 1
    assert (tmp_path / "runs/latest").resolve().name == "kl"
    reset = cli("resume", "runs/js", "--div", "pearson", "--epochs", "1", "--reset-optimizer", "--device", "cpu")
    assert reset.exit_code == 0 and "dropped" in reset.stderr


def test_spectral_norm_bounds_every_discriminator_layer_and_resumes_bit_exactly(tmp_path):
    config = tiny_config("fgan", div="kl", spectral_norm=True, epochs=2, lr_d=0.05, lr_g=0.05)
    straight = train(new_state(config), synthetic_images(), tmp_path / "straight")
    layers = [m for m in straight.D.modules() if isinstance(m, SpectralNorm)]
    assert len(layers) == 2
    for layer in layers:  # the effective weight W / sigma; sigma is power iteration's estimate, so near 1
        effective = layer.layer.weight.detach() / layer.sigma().detach()
        assert torch.linalg.matrix_norm(effective, 2).item() == pytest.approx(1.0, abs=0.05)
    plain = train(new_state(tiny_config("fgan", div="kl", epochs=2, lr_d=0.05, lr_g=0.05, spectral_norm=False)),
                  synthetic_images(), tmp_path / "p")
    assert max(torch.linalg.matrix_norm(m.weight.detach(), 2).item() for m in plain.D.modules()
               if isinstance(m, torch.nn.Linear)) > 1.5  # the plain D is not bounded
    train(new_state(dataclasses.replace(config, epochs=1)), synthetic_images(), tmp_path / "split")
    resumed = resume_run(tmp_path / "split/checkpoint.safetensors", epochs=1)
    train(resumed.state, synthetic_images(), resumed.run)
    a, b = (ckpt.read_file(tmp_path / run / "checkpoint.safetensors", "gan")[0] for run in ("straight", "split"))
    assert a.keys() == b.keys() and "D.net.0.u" in a
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_spectral_norm_trains_under_the_gradient_penalty(tmp_path):
    """The penalty's second pass through D updates the power iteration's u and v in place: the first
    pass's graph must not see that change (it raised "modified by an inplace operation")."""
    state = train(new_state(tiny_config("wgan-gp", spectral_norm=True)), synthetic_images(), tmp_path / "r")
    assert state.epoch == 1 and all(torch.isfinite(p).all() for p in state.D.parameters())


def test_r1_adds_gamma_over_2_times_the_squared_gradient_on_real_data():
    """With a linear D, v = w.x + b, grad_x D = w, so R1 = gamma/2 ||w||^2 and its gradient in w is gamma w:
    one SGD step with R1 moves w by an extra -lr gamma w, and nothing when gamma is 0."""
    def d_steps(r1, every):
        state = new_state(tiny_config(d_hidden=(), optimizer="sgd", lr_d=0.1, lr_g=0.1, r1=r1, r1_every=every))
        w0 = state.D.net[0].weight.detach().clone()
        train_step(state, to_unit_range(synthetic_images(16)), 0.0)
        return w0, state.D.net[0].weight.detach()

    (w0, plain), (_, penalised) = d_steps(0.0, 1), d_steps(3.0, 1)
    torch.testing.assert_close(penalised - plain, -0.1 * 3.0 * w0, rtol=1e-4, atol=1e-6)
    # lazy R1 every 4th step (Karras et al. 2020): step 0 takes 4 times the push
    _, lazy = d_steps(3.0, 4)
    torch.testing.assert_close(lazy - plain, -0.1 * 3.0 * 4 * w0, rtol=1e-4, atol=1e-6)
    w = torch.randn(1, 4, requires_grad=True)
    x = torch.randn(6, 4, requires_grad=True)
    assert losses.zero_centred_penalty((x @ w.T).squeeze(1), x).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-6)


def test_lr_warmup_and_decay_follow_the_schedule_and_survive_a_switch(tmp_path):
    warm = make_config("fgan", lr_warmup=10, epochs=12)
    assert [warm.lr_factor(e) for e in range(12)] == [0.01] * 5 + [0.1] * 5 + [1.0] * 2
    assert [warm.lr_factor(e, start=6) for e in (6, 11, 15, 16)] == [0.01, 0.1, 0.1, 1.0]  # from a switch at epoch 6
    decay = make_config("vanilla", lr_decay="linear", lr_floor=0.2, epochs=4)
    assert [decay.lr_factor(e) for e in range(4)] == pytest.approx([1.0, 0.8, 0.6, 0.4])
    cosine = make_config("vanilla", lr_decay="cosine", epochs=2)
    assert [cosine.lr_factor(e) for e in range(2)] == pytest.approx([1.0, 0.5])
    # the optimizer runs at the scheduled rate, and a switch restarts the warm-up
    state = train(new_state(tiny_config("fgan", lr_warmup=4, epochs=3)), synthetic_images(), tmp_path / "js")
    assert [r["lr_d"] for r in read_log(tmp_path / "js")] == \
        pytest.approx([2e-6, 2e-6, 2e-5])
    assert state.opt_d.param_groups[0]["lr"] == pytest.approx(2e-5)
    switched = resume_run(tmp_path / "js/checkpoint.safetensors", {"div": "kl"}, epochs=1)
    assert switched.state.objective_start == 3
    train(switched.state, synthetic_images(), switched.run)
    assert read_log(switched.run)[0]["lr_d"] == pytest.approx(2e-6)


def test_discriminator_accuracy_uses_each_objectives_threshold():
    # vanilla: real when v > 0; KL: real when g_f(v) = v > f'(1) = 1; WGAN: against the batch median
    assert losses.d_accuracy(make_config("vanilla"), torch.tensor([1.0, -1.0]), torch.tensor([-2.0, 3.0])) == (0.5, 0.5)
    assert losses.d_accuracy(make_config("fgan", div="kl"), torch.tensor([2.0, 0.5]), torch.tensor([0.9, 0.2])) == (0.5, 1.0)
    wgan = make_config("wgan")  # torch's median of an even count is the lower middle value
    assert losses.d_accuracy(wgan, torch.tensor([5.0, 6.0]), torch.tensor([1.0, 2.0])) == (1.0, 1.0)
    assert losses.d_accuracy(wgan, torch.tensor([5.0, 6.0]), torch.tensor([1.0, 7.0])) == (0.5, 0.5)
