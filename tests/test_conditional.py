"""Class-conditional GANs (--conditional): labels from every labelled source into the batches, the
projection discriminator's scalar for every objective, `gan sample --class`, rejection that keeps
the class mix, interpolation within and between classes, and the scores of labelled samples."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli import api, training
from gancli.checkpoint import read_header
from gancli.config import TrainConfig
from gancli.data import load_labelled
from gancli.inference import open_checkpoint
from gancli.models import SpectralNorm, build_models, generate_images, to_unit_range
from gancli.resuming import resume_run
from gancli.sampling import generate
from gancli.state import new_state
from gancli.streams import read_samples
from gancli.training import train, train_step
from tests.conftest import TINY, assert_same_checkpoint, shell, synthetic_images, tiny_config, write_idx

CLASSES = tuple("0123")


def labelled_images(n: int = 128, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic images whose class is written in them: image i, of class i % classes, is filled with
    its class's grey level under its square."""
    images, labels = synthetic_images(n), torch.arange(n) % classes
    return images // (1 + labels.view(-1, 1, 1, 1).to(torch.uint8)), labels


def conditional_config(objective: str = "vanilla", **overrides):
    return tiny_config(objective, conditional=True, classes=CLASSES, **overrides)


def test_the_labels_reach_each_batch_with_their_images_and_a_resume_is_bit_exact(tmp_path, monkeypatch):
    images, labels = labelled_images()
    level = {int(images[i].max()): int(labels[i]) for i in range(len(images))}  # grey level -> class
    seen = []
    step = training.train_step
    monkeypatch.setattr(training, "train_step", lambda state, real, ms, y=None: seen.append((real, y)) or step(state, real, ms, y))
    config = conditional_config(epochs=2)
    straight = train(new_state(config), images, tmp_path / "straight", labels=labels)
    assert len(seen) == 16 and all(y is not None and len(y) == len(real) for real, y in seen)
    for real, y in seen:  # each image's class came with it, in the data's shuffled order
        grey = ((real.flatten(1).max(1).values + 1) * 127.5).round().long()
        assert [level[int(g)] for g in grey] == y.tolist()
    train(new_state(dataclasses.replace(config, epochs=1)), images, tmp_path / "split", labels=labels)
    resumed = resume_run(tmp_path / "split/checkpoint.safetensors", epochs=1)
    train(resumed.state, images, resumed.run, labels=labels)
    assert_same_checkpoint(tmp_path / "straight/checkpoint.safetensors", tmp_path / "split/checkpoint.safetensors")
    assert read_header(tmp_path / "straight/checkpoint.safetensors").config.classes == CLASSES
    assert straight.G.condition.embed.weight.shape == (4, 4) and straight.D.projection.embed.weight.shape == (32, 4)


def test_labels_come_from_a_dataset_and_from_class_folders_and_not_from_a_flat_folder(tmp_path):
    from PIL import Image

    images, labels = labelled_images(20)
    write_idx(tmp_path / "data/mnist", "train-images-idx3-ubyte", images.squeeze(1).numpy())
    write_idx(tmp_path / "data/mnist", "train-labels-idx1-ubyte", labels.numpy())
    mnist = load_labelled("mnist[:12]", str(tmp_path / "data"))
    assert torch.equal(mnist.labels, labels[:12]) and mnist.meta["classes"] == list("0123456789")
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "folders" / ("cat", "dog", "eel", "fox")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{i:03d}.png")
    folders = load_labelled(str(tmp_path / "folders"))
    assert folders.meta["classes"] == ["cat", "dog", "eel", "fox"]
    assert folders.labels.tolist() == [0, 1, 2, 3] * 5  # interleaved: any first N holds every class
    (tmp_path / "flat").mkdir()
    Image.fromarray(images[0, 0].numpy()).save(tmp_path / "flat" / "a.png")
    with pytest.raises(Exception, match="has no class labels"):
        load_labelled(str(tmp_path / "flat"))


@pytest.mark.parametrize("objective, fields", [("vanilla", {}), ("fgan", {"div": "kl"}), ("wgan", {}), ("wgan-gp", {}),
                                               ("vanilla", {"ms_lambda": 0.1}), ("vanilla", {"arch": "dcgan", "conv_width": 4}),
                                               ("wgan-gp", {"spectral_norm": True})])
def test_the_projection_discriminator_gives_every_objective_its_one_scalar(objective, fields):
    state = new_state(conditional_config(objective, **fields, r1=1.0, r1_every=1))
    images, labels = labelled_images(16)
    scalars = train_step(state, to_unit_range(images), fields.get("ms_lambda", 0.0), labels)
    assert all(torch.isfinite(v) for v in scalars.values())
    x, y = to_unit_range(images), labels
    state.D.eval()  # no power iteration: the check below reads the same sigma
    v = state.D(x, y)
    assert v.shape == (16,)
    net, embed = state.D.net, state.D.projection.embed  # v(x, y) = head(phi(x)) + <embed(y), phi(x)>
    phi = net[:-1](x if fields.get("arch") == "dcgan" else x.flatten(1))
    rows = embed(torch.eye(4))[y]  # embed(y): the class's row of the (normalised) embedding
    torch.testing.assert_close(v, net[-1](phi).squeeze(1) + (rows * phi).sum(1))
    if fields.get("spectral_norm"):  # the embedding is normalised with D's other layers
        assert isinstance(embed, SpectralNorm) and torch.linalg.matrix_norm(embed.layer.weight / embed.sigma(), 2) < 1.1
    with pytest.raises(ValueError, match="takes labels"):
        state.D(x)


def test_rejection_and_keep_top_select_within_a_class_so_the_mix_stays():
    config = conditional_config(epochs=1)
    G, D = build_models(config)
    G.eval(), D.eval()
    strict = lambda v: v > v.median()  # about half of every batch, unevenly over the classes
    for options in ({"accept": strict}, {"keep_top": 0.3}, {}):
        samples = generate(config, G, D, 40, seed=3, **options)
        assert torch.bincount(samples.labels, minlength=4).tolist() == [10, 10, 10, 10]
    sevens = generate(config, G, D, 9, classes=(2,), accept=strict)
    assert sevens.labels.tolist() == [2] * 9 and sevens.meta["classes"] == list(CLASSES)
    again = generate(config, G, D, 9, classes=(2,), accept=strict)
    assert torch.equal(sevens.images, again.images)


@pytest.fixture
def conditional_run(user_shell):
    """A conditional run trained on a synthetic 4-class folder of class subfolders."""
    from PIL import Image

    images, labels = labelled_images(64)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = user_shell / "classes" / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{i:03d}.png")
    state = new_state(conditional_config(epochs=1))
    train(state, images, user_shell / "runs" / "c", labels=labels)
    return user_shell / "runs" / "c"


def test_sample_class_draws_that_class_and_the_stream_keeps_the_labels(cli, conditional_run):
    result = cli("sample", conditional_run, "--class", "2", "-n", "12", "-o", "twos.safetensors", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    twos = read_samples(Path("twos.safetensors").read_bytes(), "twos")
    assert twos.labels.tolist() == [2] * 12 and twos.meta["classes"] == list(CLASSES)
    per_class = cli("sample", conditional_run, "--classes", "1,3", "--per-class", "5", "-o", "some.safetensors",
                    "--grid", "grid.png", "--device", "cpu")
    assert per_class.exit_code == 0, per_class.stderr
    some = read_samples(Path("some.safetensors").read_bytes(), "some")
    assert torch.bincount(some.labels).tolist() == [0, 5, 0, 5] and Path("grid.png").stat().st_size > 0
    filtered = cli("filter", "some.safetensors", "--ckpt", conditional_run, "--keep-top", "0.4", "-o", "kept.safetensors",
                   "--device", "cpu")
    assert filtered.exit_code == 0, filtered.stderr
    assert torch.bincount(read_samples(Path("kept.safetensors").read_bytes(), "kept").labels).tolist() == [0, 2, 0, 2]
    unknown = cli("sample", conditional_run, "--class", "7", "-n", "4", "-o", "x.safetensors", "--device", "cpu")
    assert unknown.exit_code == 1 and "no class '7' in this model (its classes: 0, 1, 2, 3)" in unknown.stderr


def test_an_unconditional_checkpoint_refuses_a_class(cli, checkpoints):
    for args in (("sample", "--class", "7"), ("sample", "--per-class", "3"), ("interpolate", "--class", "1")):
        result = cli(*args[:1], checkpoints / "checkpoint.safetensors", *args[1:], "-o", "x.safetensors", "--device", "cpu")
        assert result.exit_code == 1 and "unconditional" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_interpolation_keeps_a_class_or_moves_between_two(cli, conditional_run):
    within = api.interpolate(conditional_run, (0, 1), 5, klass="3", device="cpu")
    assert within.labels.tolist() == [3] * 10
    between = api.interpolate(conditional_run, (0, 1), 5, between_classes=("1", "2"), device="cpu")
    opened = open_checkpoint(conditional_run / "checkpoint.safetensors", "cpu")
    z = between.z[::5]  # each row's one latent: its ends are that latent drawn for class 1, then for class 2
    assert torch.equal(between.images[::5], generate_images(opened.G, z, "cpu", labels=torch.tensor([1, 1])))
    assert torch.equal(between.images[4::5], generate_images(opened.G, z, "cpu", labels=torch.tensor([2, 2])))
    result = cli("interpolate", conditional_run, "--between-classes", "1,2", "--reject", "0.5", "--device", "cpu")
    assert result.exit_code == 1 and "--between-classes has two" in result.stderr


def test_a_conditional_run_end_to_end_train_sample_score_in_a_shell(tmp_path):
    """`gan train --conditional` on a labelled synthetic MNIST, evaluated per epoch with its accuracy on the
    class asked, then `gan sample --per-class | gan score`, which adds the class accuracy and the intra-class FIDs."""
    data = tmp_path / "data"
    for prefix, seed in (("train", 1), ("t10k", 2)):
        images = synthetic_images(500, side=28, seed=seed).squeeze(1).numpy()
        write_idx(data / "mnist", f"{prefix}-images-idx3-ubyte", images)
        write_idx(data / "mnist", f"{prefix}-labels-idx1-ubyte", np.arange(500) % 10)
    tiny = " ".join(TINY)
    result = shell(f"gan train vanilla --conditional --epochs 1 --eval-n 50 {tiny} --name c && "
                   "gan sample runs/c --per-class 50 | gan score --features mnist -n 500 --json", tmp_path,
                   {"GANCLI_DATA": str(data)})
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    said = result.stderr.decode()
    assert "conditional on 10 classes" in said and "of the class asked" in said
    scores = json.loads(result.stdout)
    assert scores["asked_histogram"] == [50] * 10 and 0 <= scores["class_accuracy"] <= 1
    assert set(scores["intra_fid"]) == set("0123456789") and scores["intra_fid_mean"] > 0
    log = json.loads((tmp_path / "runs/c/log.jsonl").read_text().splitlines()[-1])
    assert 0 <= log["class_accuracy"] <= 1
    # as PNGs, a folder per class, read back interleaved: the same classes, scored the same
    folder = shell("gan sample runs/c --per-class 50 -o pngs/ && gan score pngs --features mnist -n 500 --json", tmp_path,
                   {"GANCLI_DATA": str(data)})
    assert folder.returncode == 0, folder.stderr.decode()[-2000:]
    again = json.loads(folder.stdout)
    assert again["class_accuracy"] == scores["class_accuracy"] and again["intra_fid"] == scores["intra_fid"]
    refused = shell(f"mkdir flat && cp -r runs/c/grids/*.png flat/ && gan train vanilla --conditional --data flat {tiny}",
                    tmp_path, {"GANCLI_DATA": str(data)})
    assert refused.returncode == 1 and b"has no class labels" in refused.stderr


def test_conditional_is_fixed_when_a_run_starts_and_older_checkpoints_are_unconditional(tmp_path, checkpoints):
    from gancli.errors import GancliError

    images, labels = labelled_images()
    train(new_state(conditional_config()), images, tmp_path / "c", labels=labels)
    with pytest.raises(GancliError, match="cannot change conditional"):
        resume_run(tmp_path / "c/checkpoint.safetensors", {"conditional": False})
    stored = read_header(checkpoints / "checkpoint.safetensors").config.to_dict()
    old = TrainConfig.from_dict({k: v for k, v in stored.items() if k not in ("conditional", "classes")})  # written before them
    assert (old.conditional, old.classes, old.n_classes) == (False, (), 0)
    with pytest.raises(GancliError, match="cannot change conditional"):
        resume_run(checkpoints / "checkpoint.safetensors", {"conditional": True})


def test_labels_are_matched_to_the_model_by_name_and_refused_when_foreign(cli, conditional_run):
    from gancli.errors import GancliError
    from gancli.sampling import model_labels
    from gancli.streams import Samples, grid_images

    config = read_header(conditional_run / "checkpoint.safetensors").config
    assert cli("sample", conditional_run, "--classes", "1,3", "--per-class", "2", "-o", "pngs", "--device", "cpu").exit_code == 0
    assert sorted(p.parent.name for p in Path("pngs").rglob("*.png")) == ["1", "1", "3", "3"]  # a folder per class
    back = load_labelled("pngs")  # read back as classes 1 and 3 of the model, not as its 0 and 1
    assert back.meta["classes"] == ["1", "3"] and model_labels(config, back).tolist() == [1, 3, 1, 3]
    kept = cli("filter", "pngs", "--ckpt", conditional_run, "--keep-top", "0.5", "-o", "kept.safetensors", "--device", "cpu")
    assert kept.exit_code == 0 and read_samples(Path("kept.safetensors").read_bytes(), "kept").labels.tolist() == [0, 1]
    foreign = Samples(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), labels=torch.tensor([0, 1]), meta={"classes": ["3", "x"]})
    with pytest.raises(GancliError, match="include 'x', which the model does not have"):
        model_labels(config, foreign)
    with pytest.raises(GancliError, match="past the model's 4 classes"):
        model_labels(config, Samples(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), labels=torch.tensor([4])))
    digits = dataclasses.replace(config, classes=("3", "5", "7"))  # numbered classes are named, never indexed
    assert api.class_indices(digits, ("7", 3)) == (2, 0)
    with pytest.raises(GancliError, match="no class '1'"):
        api.class_indices(digits, ("1",))
    padded = grid_images(Samples(torch.full((3, 1, 8, 8), 9, dtype=torch.uint8), labels=torch.tensor([0, 2, 2])))
    assert padded.shape[0] == 16 and padded[:1].eq(9).all() and padded[1:8].eq(0).all()  # a row of 8 per class
    (Path("classes") / "empty").mkdir()
    with pytest.raises(GancliError, match="class folder empty holds no images"):
        load_labelled("classes")


def test_the_classifier_is_the_samples_dataset_s_and_a_class_is_asked_once(conditional_run):
    from gancli.errors import GancliError
    from gancli.streams import Samples

    config = read_header(conditional_run / "checkpoint.safetensors").config
    with pytest.raises(GancliError, match="name a class twice"):
        api.class_indices(config, ("1", "1"))
    notes = []
    kana = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]  # KMNIST's, not MNIST's digits
    drawn = Samples(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), labels=torch.arange(10),
                    meta={"classes": kana, "data": "kmnist"})
    result = api._asked_classes(drawn, "mnist:test", 10, None, None, "cpu", None, notes.append)
    assert result == {"asked_histogram": [1] * 10} and "no class accuracy" in notes[0]
