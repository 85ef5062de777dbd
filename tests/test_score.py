"""`gan score` as a user runs it; the Inception path is checked in benchmarks/score_speed.py (weights not shipped)."""

import json

from gancli.streams import Samples, write_samples
from tests.conftest import shell, synthetic_images


def test_sample_pipe_score_json_reports_metrics_and_protocol(checkpoints, tmp_path):
    write_samples(Samples(synthetic_images(200, seed=1)), str(tmp_path / "ref.safetensors"))
    command = f"gan sample {checkpoints} -n 200 | gan score --features mnist --ref ref.safetensors --json"
    first = shell(command, tmp_path)
    assert first.returncode == 0, first.stderr.decode()
    result = json.loads(first.stdout)
    for key in ("fid", "precision", "recall", "density", "coverage", "kid_mean", "kid_std", "classes_present", "class_kl"):
        assert isinstance(result[key], (int, float)), key
    assert (result["extractor"], result["n_generated"], result["n_reference"], result["k"]) == ("mnist-classifier", 200, 200, 3)
    assert len(result["weights_hash"]) == 16 and "resized to grey 28x28" in first.stderr.decode()
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 1
    second = shell(command, tmp_path)
    assert json.loads(second.stdout) == result  # identical with the cached reference features


def test_real_against_itself_scores_perfectly(tmp_path):
    write_samples(Samples(synthetic_images(100)), str(tmp_path / "a.safetensors"))
    result = shell("gan score a.safetensors --ref a.safetensors --features mnist --json --no-cache", tmp_path)
    values = json.loads(result.stdout)
    assert abs(values["fid"]) < 1e-3 and values["precision"] == values["recall"] == 1.0


def test_table_output_and_user_errors(tmp_path):
    write_samples(Samples(synthetic_images(50)), str(tmp_path / "a.safetensors"))
    write_samples(Samples(synthetic_images(1)), str(tmp_path / "one.safetensors"))
    table = shell("gan score a.safetensors --ref a.safetensors --features mnist --no-cache", tmp_path)
    assert table.returncode == 0 and "fid" in table.stdout.decode() and "mnist-classifier" in table.stdout.decode()
    result = shell("gan score one.safetensors --ref a.safetensors --features mnist", tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1 and "at least 2" in err, err
