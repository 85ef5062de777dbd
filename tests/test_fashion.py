"""Fashion-MNIST as a first-class dataset: its own classifier picked by `auto` and by the per-epoch
evaluation, class coverage in garments, and never one dataset's files or classifier for another's."""

import json
from pathlib import Path

import pytest

import gancli
import gancli.api
from gancli.config import CLASSIFIER_CLASSES, make_config
from gancli.errors import GancliError
from gancli.runs import comparable_fids, read_log
from tests.conftest import TINY, synthetic_images, write_idx

GARMENTS = list(CLASSIFIER_CLASSES["fashion-mnist"])


def write_dataset(folder: Path, name: str, seed: int, n: int = 96) -> None:
    """Synthetic 28x28 IDX files, images and labels of both splits, in folder/name/ as the official ones are named."""
    for prefix, offset in (("train", 0), ("t10k", 1)):
        images = synthetic_images(n, side=28, seed=seed + offset).squeeze(1).numpy()
        write_idx(folder / name, f"{prefix}-images-idx3-ubyte", images)
        write_idx(folder / name, f"{prefix}-labels-idx1-ubyte", (images.reshape(n, -1).argmax(1) % 10).astype("uint8"))


@pytest.fixture
def fashion_only(user_shell, monkeypatch) -> Path:
    """GANCLI_DATA with a Fashion-MNIST and no MNIST at all: whatever reads MNIST fails."""
    data = user_shell / "data"
    write_dataset(data, "fashion-mnist", seed=10)
    monkeypatch.setenv("GANCLI_DATA", str(data))
    return data


@pytest.mark.parametrize("reference, chosen", [
    ("mnist:test", "mnist"), ("mnist[:500]", "mnist"), ("fashion-mnist:test", "fashion-mnist"),
    ("fashion-mnist[100:200]", "fashion-mnist"), ("kmnist:test", "inception"), ("pngs/", "inception")])
def test_auto_picks_the_classifier_of_the_references_dataset(reference, chosen):
    assert gancli.api.choose_features("auto", reference) == chosen


def test_a_fashion_score_runs_its_classifier_and_names_garments(fashion_only, cli):
    result = gancli.score("fashion-mnist:test", reference="fashion-mnist", features="auto", n=64)
    assert result["extractor"] == "fashion-mnist-classifier" and "warning" not in result
    assert result["class_names"] == GARMENTS and result["classes_total"] == 10
    assert set(result["classes_missing"]) <= set(GARMENTS)
    assert result["classes_present"] + len(result["classes_missing"]) == 10
    table = cli("score", "fashion-mnist:test", "--ref", "fashion-mnist", "--features", "auto", "-n", "64")
    assert table.exit_code == 0, table.stderr
    assert f"{result['classes_present']}/10 classes" in table.stdout and "digits" not in table.stdout
    if result["classes_missing"]:
        assert f"no {result['classes_missing'][0]}" in table.stdout
    # the two classifiers' results never compare
    mnist_view = gancli.score("fashion-mnist:test", reference="fashion-mnist", features="mnist", n=64)
    Path("a.json").write_text(json.dumps(result))
    Path("b.json").write_text(json.dumps(mnist_view))
    compared = cli("compare", "a.json", "b.json")
    assert compared.exit_code == 1 and "extractor" in compared.stderr


def test_class_gates_need_a_classifier_the_reference_has(fashion_only, cli):
    gated = cli("score", "fashion-mnist:test", "--ref", "fashion-mnist", "--features", "auto", "-n", "64",
                "--min-classes", "11")
    assert gated.exit_code == 2  # more classes than any dataset has: a usage error
    gated = cli("score", "fashion-mnist:test", "--ref", "fashion-mnist", "--features", "auto", "-n", "64",
                "--min-classes", "1")
    assert gated.exit_code == 0, gated.stderr
    refused = cli("score", "fashion-mnist:test", "--ref", "kmnist:test", "--features", "auto", "--min-classes", "1")
    assert refused.exit_code == 1 and "the Inception does not make" in refused.stderr


def test_evaluation_defaults_follow_the_datasets_classifier():
    assert make_config("vanilla", data="fashion-mnist").eval_every == 1
    assert make_config("vanilla", data="fashion-mnist:train[:5000]").eval_every == 1
    assert make_config("vanilla", data="kmnist").eval_every == 0
    with pytest.raises(GancliError, match="ships those of mnist, fashion-mnist, not one for kmnist"):
        make_config("vanilla", data="kmnist", eval_every=1)


def test_a_fashion_run_is_evaluated_every_epoch_on_fashion_test_alone(fashion_only, cli):
    """No MNIST anywhere: a run that read MNIST's test split or classifier would fail or say so."""
    result = cli("train", "vanilla", "--data", "fashion-mnist", *TINY, "--epochs", "2", "--eval-n", "32", "--name", "f")
    assert result.exit_code == 0, result.stderr
    log = read_log(Path("runs/f"))
    assert [r["eval_features"] for r in log] == ["fashion-mnist-classifier"] * 2
    assert all(r["classes_total"] == 10 and set(r["classes_missing"]) <= set(GARMENTS) for r in log)
    said = " ".join(result.stderr.split())
    assert said.count("/10 classes") == 2 and "digits" not in said
    assert Path("runs/f/best.safetensors").is_file()
    listed = json.loads(cli("runs", "--json").stdout)[0]
    assert listed["fid_features"] == "fashion-mnist-classifier" and listed["classes_total"] == 10
    assert listed["best_fid"] == min(r["fid"] for r in log)
    assert cli("plot", "runs/f", "-o", "curves.png").exit_code == 0 and Path("curves.png").stat().st_size > 0


def test_switching_dataset_on_resume_never_compares_the_two_classifiers_fids(user_shell, monkeypatch, cli):
    data = user_shell / "data"
    write_dataset(data, "mnist", seed=20)
    write_dataset(data, "fashion-mnist", seed=30)
    monkeypatch.setenv("GANCLI_DATA", str(data))
    assert cli("train", "vanilla", *TINY, "--epochs", "1", "--eval-n", "32", "--name", "m").exit_code == 0
    result = cli("resume", "runs/m", "--data", "fashion-mnist", "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    assert "now scores on the fashion-mnist classifier" in " ".join(result.stderr.split())
    log = read_log(Path("runs/m"))
    assert [r["eval_features"] for r in log] == ["mnist-classifier", "fashion-mnist-classifier"]
    assert log[1]["best"] is True  # the first of its kind, whatever the MNIST epoch scored
    assert comparable_fids(log) == [log[1]]


def test_logs_from_before_the_second_classifier_read_as_mnist_evaluations():
    old = [{"epoch": 1, "fid": 5.0, "eval_n": 2000}, {"epoch": 2, "fid": 4.0, "eval_n": 2000}]
    assert comparable_fids(old) == old
    mixed = old + [{"epoch": 3, "fid": 9.0, "eval_n": 2000, "eval_features": "fashion-mnist-classifier"}]
    assert comparable_fids(mixed) == mixed[2:]
