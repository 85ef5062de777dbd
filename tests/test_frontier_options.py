"""The options of the frontier recipes: DiffAugment (--diffaug), top-k training (--top-k) and the
InfoGAN conv net of Lucic et al. (--arch infogan): what each does, and that each trains, saves and
resumes bit-exactly."""

import dataclasses

import pytest
import torch

from gancli import augment, inference, losses
from gancli import checkpoint as ckpt
from gancli.config import AUGMENTATIONS, TrainConfig
from gancli.errors import GancliError
from gancli.models import DCGANGenerator, build_models, to_unit_range
from gancli.resuming import resume_run
from gancli.state import new_state
from gancli.training import train, train_step
from tests.conftest import TINY, synthetic_images, tiny_config


def test_the_config_names_every_policy_augment_has():
    assert tuple(augment.POLICIES) == AUGMENTATIONS


def at(value: float, n: int = 1) -> torch.Tensor:
    """Uniforms that give each policy's integer `value` of `n` positions (the middle of its bin)."""
    return torch.full((1, 2), (value + 0.5) / n)


def test_translation_moves_the_image_by_whole_pixels_and_fills_with_zero():
    x = torch.arange(1, 8 * 8 + 1, dtype=torch.float32).view(1, 1, 8, 8)  # shifts of up to round(8/8) = 1
    assert torch.equal(augment.translate(x, at(1, 3)), x)  # the middle of [-1, 1]: no move
    moved = augment.translate(x, torch.tensor([[2.5 / 3, 0.5 / 3]]))  # dy = +1 (down), dx = -1 (left)
    expected = torch.zeros_like(x)
    expected[..., 1:, :-1] = x[..., :-1, 1:]
    assert torch.equal(moved, expected)


def test_cutout_blanks_one_square_of_half_a_side_cut_at_the_border():
    x = torch.ones(2, 1, 8, 8)
    out = augment.cutout(x, torch.tensor([[4.5 / 9, 4.5 / 9], [0.5 / 9, 8.5 / 9]]))  # centres (4, 4) and (0, 8)
    assert (out[0] == 0).sum() == 16 and (out[0, 0, 2:6, 2:6] == 0).all()  # a 4 x 4 square inside
    assert (out[1] == 0).sum() == 4 and (out[1, 0, :2, 6:] == 0).all()  # its corner in the image


def test_diff_augment_is_differentiable_and_each_policy_takes_its_own_draws():
    x = torch.randn(5, 1, 8, 8, requires_grad=True)
    u = torch.rand(5, 4, generator=torch.Generator().manual_seed(0))
    out = augment.diff_augment(x, ("translation", "cutout"), u)
    assert torch.equal(out, augment.cutout(augment.translate(x, u[:, :2]), u[:, 2:]))
    out.sum().backward()
    assert x.grad is not None and 0 < (x.grad != 0).sum() < x.numel()  # gradients pass where pixels were kept


@pytest.mark.parametrize("options", [{"diffaug": "translation,cutout", "r1": 1.0, "r1_every": 2},
                                     {"diffaug": "cutout", "objective": "wgan-gp", "gp_lambda": 10.0},
                                     {"top_k": 0.5, "top_k_decay": 0.5},
                                     {"arch": "infogan", "conv_width": 4, "diffaug": "translation"},
                                     {"d_arch": "infogan", "conv_width": 4, "diffaug": "translation"}],
                         ids=["diffaug-r1", "diffaug-gp", "top-k", "infogan", "mlp-g-infogan-d"])
def test_each_option_trains_the_same_with_the_same_seed_and_resumes_bit_exactly(tmp_path, options):
    config = tiny_config(epochs=2, **options)
    images = synthetic_images()
    straight = train(new_state(config), images, tmp_path / "straight")
    train(new_state(config), images, tmp_path / "again")
    train(new_state(dataclasses.replace(config, epochs=1)), images, tmp_path / "split")
    resumed = resume_run(tmp_path / "split/checkpoint.safetensors", epochs=1)
    train(resumed.state, images, resumed.run)
    a, b, c = (ckpt.read_file(tmp_path / run / "checkpoint.safetensors", "gan")[0] for run in ("straight", "again", "split"))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    plain = train(new_state(tiny_config(epochs=2, arch=config.arch, conv_width=config.conv_width)), images, tmp_path / "p")
    assert not all(torch.equal(p, q) for p, q in zip(plain.G.parameters(), straight.G.parameters(), strict=True))
    _, meta = ckpt.read_file(tmp_path / "straight/checkpoint.safetensors", "gan")
    assert all(meta["config"][k] == v for k, v in options.items())


def test_diffaug_augments_what_d_sees_not_the_batch(monkeypatch):
    state = new_state(tiny_config(diffaug="translation,cutout"))
    seen = []
    forward = state.D.forward
    monkeypatch.setattr(state.D, "forward", lambda x, y=None: seen.append(x.detach().clone()) or forward(x, y))
    real = to_unit_range(synthetic_images(16))
    train_step(state, real.clone(), 0.0)
    assert len(seen) == 2 and seen[0].shape[0] == 32 and seen[1].shape[0] == 16  # D's step on both, G's on the fakes
    assert not torch.equal(seen[0][:16], real) and (seen[0][:16] == 0).any()  # T(real): shifted, a square at 0


def test_top_k_trains_g_on_exactly_k_fakes_annealed_per_epoch(monkeypatch, tmp_path):
    assert torch.equal(losses.top_k(torch.tensor([3.0, -1.0, 5.0, 0.0]), 2).sort().values, torch.tensor([3.0, 5.0]))
    config = tiny_config(epochs=3, top_k=0.5, top_k_decay=0.6)
    assert [config.top_k_at(e, 16) for e in range(4)] == [16, 10, 8, 8]  # ceil(16 max(0.5, 0.6^e))
    used = []
    g_loss = losses.g_loss
    monkeypatch.setattr(losses, "g_loss", lambda cfg, v: used.append(len(v)) or g_loss(cfg, v))
    train(new_state(config), synthetic_images(64), tmp_path / "run")
    assert used == [16] * 4 + [10] * 4 + [8] * 4  # 64 images, batches of 16: 4 G steps an epoch


def test_infogan_is_lucic_et_als_conv_net_and_dcgan_keeps_its_keys():
    G, D = build_models(TrainConfig(arch="infogan", image_shape=(1, 28, 28)))
    shapes = [tuple(m.weight.shape) for m in (*G.modules(), *D.modules()) if isinstance(m, (torch.nn.Linear,
              torch.nn.ConvTranspose2d, torch.nn.Conv2d))]
    # G: fc 1024 -> fc 7x7x128 -> deconv 64 -> deconv 1; D: conv 64 -> conv 128 -> fc 1024 -> 1
    assert shapes == [(1024, 100), (7 * 7 * 128, 1024), (128, 64, 4, 4), (64, 1, 4, 4),
                      (64, 1, 4, 4), (128, 64, 4, 4), (1024, 7 * 7 * 128), (1, 1024)]
    assert G(torch.randn(3, 100)).shape == (3, 1, 28, 28) and D(torch.randn(3, 1, 28, 28)).shape == (3,)
    G, D = build_models(TrainConfig(arch="dcgan", image_shape=(1, 28, 28)))
    assert {*G.state_dict(), *D.state_dict()} >= {"project.0.weight", "project.1.running_mean", "net.7.weight"}


def test_d_arch_pairs_the_course_mlp_generator_with_the_conv_discriminator_and_back():
    G, D = build_models(TrainConfig(d_arch="infogan", image_shape=(1, 28, 28)))
    _, infogan_d = build_models(TrainConfig(arch="infogan", image_shape=(1, 28, 28)))
    course_g, course_d = build_models(TrainConfig(image_shape=(1, 28, 28)))
    shapes = lambda net: [tuple(p.shape) for p in net.state_dict().values()]
    assert shapes(G) == shapes(course_g) and shapes(D) == shapes(infogan_d)
    G, D = build_models(TrainConfig(arch="infogan", d_arch="mlp", image_shape=(1, 28, 28)))
    assert isinstance(G, DCGANGenerator) and shapes(D) == shapes(course_d)
    assert TrainConfig(arch="dcgan", d_arch="dcgan").discriminator_arch == "dcgan"
    from gancli.config import validate

    assert validate(TrainConfig(arch="dcgan", d_arch="dcgan")).d_arch == ""  # D of G's kind is spelt one way


@pytest.mark.parametrize("fields, said", [({"diffaug": "flip"}, "unknown --diffaug"),
                                          ({"diffaug": "cutout,cutout"}, "unknown --diffaug"),
                                          ({"top_k": 0.0}, "--top-k is a fraction"),
                                          ({"top_k_decay": 1.5}, "--top-k is a fraction"),
                                          ({"arch": "infogan", "image_shape": (1, 6, 6)}, "--arch infogan needs"),
                                          ({"d_arch": "dcgan", "image_shape": (1, 6, 6)}, "--d-arch dcgan needs"),
                                          ({"d_arch": "resnet"}, "unknown discriminator architecture")])
def test_bad_values_are_refused_with_one_line(fields, said):
    from gancli.config import validate

    with pytest.raises(GancliError, match=said):
        validate(TrainConfig(**fields))


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_trains_bf16_only_where_the_cpu_runs_it_natively_and_the_checkpoint_says_which(
        cli, tiny_data, monkeypatch, native):
    # the recipes say auto: bf16 emulated on a CPU without AVX-512 bf16 trains infogan 22x slower than fp32
    monkeypatch.setattr(inference, "native_bf16", lambda device: native)
    trained = cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--precision", "auto", "--name", "auto")
    assert trained.exit_code == 0, trained.output
    assert "emulated" not in trained.stderr
    assert ckpt.read_header(tiny_data.parent / "runs/auto/checkpoint.safetensors").config.precision == \
        ("bf16" if native else "fp32")


def test_resume_with_precision_auto_resolves_it_on_the_machine_that_continues(cli, tiny_data, monkeypatch):
    assert cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--name", "a").exit_code == 0
    monkeypatch.setattr(inference, "native_bf16", lambda device: True)
    assert cli("resume", "runs/a", "--device", "cpu", "--precision", "auto").exit_code == 0
    assert ckpt.read_header(tiny_data.parent / "runs/a/checkpoint.safetensors").config.precision == "bf16"


def test_bf16_asked_for_where_it_is_emulated_trains_with_a_warning_that_names_auto(cli, tiny_data, monkeypatch):
    monkeypatch.setattr(inference, "native_bf16", lambda device: False)
    trained = cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--precision", "bf16", "--name", "b")
    assert trained.exit_code == 0, trained.output
    assert "warning: bf16 autocast on this CPU is emulated" in trained.stderr and "--precision auto" in trained.stderr
    assert ckpt.read_header(tiny_data.parent / "runs/b/checkpoint.safetensors").config.precision == "bf16"
    assert inference.precision_warning("fp32", "cpu") is None


@pytest.mark.parametrize("avx512_bf16, amx", [(True, False), (False, True), (False, False)])
def test_native_bf16_means_avx512_bf16_or_amx_on_a_cpu_and_never_a_gpu(monkeypatch, avx512_bf16, amx):
    # oneDNN's mkldnn._is_mkldnn_bf16_supported also says yes to AVX-512 without bf16, where it emulates it
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    native = avx512_bf16 or amx
    assert inference.native_bf16("cpu") == native
    assert inference.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert (inference.precision_warning("bf16", "cpu") is None) == native
    assert inference.resolve_precision("bf16", "cpu") == "bf16" and inference.resolve_precision("fp32", "cpu") == "fp32"
    assert not inference.native_bf16("cuda") and inference.resolve_precision("auto", "cuda") == "fp32"
    assert inference.precision_warning("bf16", "cuda") is None  # not timed there, not called slow there
