"""gancli in CI: quality gates (exit 3), `gan compare`, sliced sources and examples/ci.sh."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from gancli.data import load_images
from gancli.errors import GancliError
from gancli.quality import compare, failed_gates
from gancli.streams import Samples, write_samples
from tests.conftest import shell, synthetic_images, write_idx

ROOT = Path(__file__).resolve().parents[1]
RESULT = {"extractor": "mnist-classifier", "weights_hash": "abc", "n_generated": 100, "n_reference": 100,
          "reference": "mnist:test[:100]", "k": 3, "fid": 50.0, "kid_mean": 2.0, "precision": 0.7, "recall": 0.5,
          "density": 0.9, "coverage": 0.6, "classes_present": 9}


@pytest.mark.parametrize(("metric", "passing", "failing"), [
    ("fid", 50.0, 49.999), ("precision", 0.7, 0.7001), ("recall", 0.5, 0.5001), ("density", 0.9, 0.9001),
    ("coverage", 0.6, 0.6001), ("classes_present", 9, 10)])
def test_each_gate_passes_at_its_bound_and_fails_past_it(metric, passing, failing):
    assert failed_gates(RESULT, {metric: passing}) == []
    assert failed_gates(RESULT, {metric: failing}) == [f"{metric} {RESULT[metric]:.4g} {'>' if metric == 'fid' else '<'} {failing:g}"]


def test_score_gates_print_the_result_then_exit_3_naming_each_failure(cli):
    write_samples(Samples(synthetic_images(100, side=28)), "a.safetensors")
    write_samples(Samples(synthetic_images(100, side=28, seed=5)), "b.safetensors")
    scored = cli("score", "a.safetensors", "--ref", "b.safetensors", "--features", "mnist", "--json")
    result = json.loads(scored.stdout)
    fid, precision = result["fid"], result["precision"]
    passed = cli("score", "a.safetensors", "--ref", "b.safetensors", "--features", "mnist", "--json",
                 "--max-fid", repr(fid), "--min-precision", repr(precision))
    assert passed.exit_code == 0 and json.loads(passed.stdout) == result
    failed = cli("score", "a.safetensors", "--ref", "b.safetensors", "--features", "mnist", "--json",
                 "--max-fid", repr(fid * 0.99), "--min-precision", repr(precision), "--min-classes", "10")
    assert failed.exit_code == 3 and json.loads(failed.stdout) == result  # the numbers still reach stdout
    assert failed.stderr == f"gan score: quality gate failed: fid {fid:.4g} > {fid * 0.99:g}, classes_present " \
                            f"{result['classes_present']} < 10\n"
    assert cli("score", "a.safetensors", "--ref", "b.safetensors", "--min-recall", "1.5").exit_code == 2
    assert cli("score", "a.safetensors", "--ref", "b.safetensors", "--features", "inception",
               "--min-classes", "3").exit_code == 1  # the Inception predicts no classes


def test_compare_detects_a_regression_accepts_an_improvement_and_reads_stdin(cli, tmp_path):
    (tmp_path / "base.json").write_text(json.dumps(RESULT))
    (tmp_path / "worse.json").write_text(json.dumps(RESULT | {"fid": 56.0, "recall": 0.49}))
    (tmp_path / "better.json").write_text(json.dumps(RESULT | {"fid": 40.0, "precision": 0.8}))
    regressed = cli("compare", "base.json", "worse.json")
    assert regressed.exit_code == 3 and "fid" in regressed.stdout and "REGRESSED" in regressed.stdout
    assert regressed.stderr == "gan compare: regressed past 10%: fid 50 -> 56 (12.0% worse)\n"
    assert cli("compare", "base.json", "worse.json", "--max-regression", "12.5%").exit_code == 0
    assert cli("compare", "base.json", "worse.json", "--metrics", "recall,precision").exit_code == 0
    improved = cli("compare", "base.json", "-", "--json", input=(tmp_path / "better.json").read_text())
    changes = {c["metric"]: c for c in json.loads(improved.stdout)}
    assert improved.exit_code == 0 and changes["fid"]["worse_by"] == pytest.approx(-0.2)
    assert changes["precision"]["worse_by"] == pytest.approx(-0.8 / 0.7 + 1) and not changes["fid"]["regressed"]
    assert cli("compare", "base.json", "worse.json", "--max-regression", "ten").exit_code == 2
    assert cli("compare", "base.json", "worse.json", "--metrics", "fid,bogus").exit_code == 2


@pytest.mark.parametrize("field", ["extractor", "weights_hash", "n_generated", "n_reference", "reference", "k"])
def test_compare_refuses_results_of_different_protocols(cli, tmp_path, field):
    (tmp_path / "base.json").write_text(json.dumps(RESULT))
    (tmp_path / "other.json").write_text(json.dumps(RESULT | {field: "other"}))
    result = cli("compare", "base.json", "other.json")
    assert result.exit_code == 1 and f"different protocols: {field} {RESULT[field]} vs other" in result.stderr
    with pytest.raises(GancliError, match=field):
        compare(RESULT, RESULT | {field: "other"}, 0.1)


def test_sliced_sources_take_the_same_images_every_time(tmp_path):
    images = synthetic_images(50, side=28, seed=7)
    write_idx(tmp_path / "mnist", "t10k-images-idx3-ubyte", images.squeeze(1).numpy())
    write_samples(Samples(images), str(tmp_path / "s.safetensors"))
    for source in ("mnist:test", str(tmp_path / "s.safetensors")):
        assert load_images(f"{source}[:20]", str(tmp_path)).equal(images[:20])
        assert load_images(f"{source}[10:30]", str(tmp_path)).equal(images[10:30])
        assert load_images(f"{source}[40:]", str(tmp_path)).equal(images[40:])
    odd = tmp_path / "odd[:2]"  # a folder whose name looks like a slice is that folder
    odd.mkdir()
    from PIL import Image

    Image.fromarray(images[0, 0].numpy()).save(odd / "a.png")
    assert load_images(str(odd)).shape == (1, 1, 28, 28)
    for bad, needle in (("mnist:test[30:10]", "empty"), ("mnist:test[60:]", "holds 50 images")):
        with pytest.raises(GancliError, match=needle):
            load_images(bad, str(tmp_path))


def ci_env(folder: Path) -> dict:
    """The synthetic MNIST, and 2 epochs instead of 25: the pipeline is the same, its cost is not."""
    return {"GANCLI_DATA": str(folder / "mnist"), "CI_EPOCHS": "2"}


@pytest.fixture(scope="module")
def ci_folder(tmp_path_factory):
    """A copy of examples/ci.sh and examples/ci/ beside a 512-image synthetic MNIST, with a baseline of its own."""
    base = tmp_path_factory.mktemp("ci")
    for prefix, seed in (("train", 1), ("t10k", 2)):
        write_idx(base / "mnist" / "mnist", f"{prefix}-images-idx3-ubyte", synthetic_images(512, side=28, seed=seed).squeeze(1).numpy())
    shutil.copytree(ROOT / "examples" / "ci", base / "examples" / "ci")
    shutil.copy(ROOT / "examples" / "ci.sh", base / "examples" / "ci.sh")
    made = shell("examples/ci.sh --update-baseline", base, env=ci_env(base))
    assert made.returncode == 0, made.stderr.decode()[-2000:]
    return base


def test_github_workflow_shell_steps_run_as_written(ci_folder):
    """The workflow's own `run:` steps, in order, on the synthetic data (the YAML engine and the
    actions it uses are GitHub's); the install step installs this project."""
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    steps = [step["run"] for step in workflow["jobs"]["quality"]["steps"] if "run" in step]
    install = [run for run in steps if run.startswith("pip install")]
    assert install and all(run.startswith("pip install -e .") for run in install)
    for run in steps:
        if run in install:
            continue
        done = shell(run, ci_folder, env=ci_env(ci_folder))
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    baseline = json.loads((ci_folder / "examples" / "ci" / "baseline.json").read_text())
    assert json.loads((ci_folder / "ci-out" / "score.json").read_text()) == baseline  # seeded end to end


def test_ci_example_fails_with_exit_3_on_a_regression(ci_folder):
    baseline = json.loads((ci_folder / "examples" / "ci" / "baseline.json").read_text())
    (ci_folder / "better.json").write_text(json.dumps(baseline | {"fid": baseline["fid"] / 2}))
    worse = shell("examples/ci.sh --out again --baseline better.json", ci_folder, env=ci_env(ci_folder))
    assert worse.returncode == 3 and "regressed past 25%: fid" in worse.stderr.decode()
