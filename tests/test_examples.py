"""examples/study.sh --smoke end to end, as a user runs it, on a 512-image synthetic MNIST folder."""

import itertools
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from gancli.checkpoint import read_header
from tests.conftest import gan_env, synthetic_images, write_idx

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("vanilla", "fgan-kl", "wgan-gp", "msgan")


def example(script: str, *args, cwd: Path, data: Path, env=None):
    return subprocess.run(["bash", str(ROOT / "examples" / script), *map(str, args)], cwd=cwd,
                          env=gan_env(cwd, GANCLI_DATA=str(data), **(env or {})), capture_output=True, timeout=600)


def study(out: Path, data: Path):
    return example("study.sh", "--smoke", "--out", out, cwd=out.parent, data=data)


def array_task(task: int, out: Path, data: Path, cwd: Path):
    """examples/slurm/study.sbatch's body for array task `task`, without Slurm."""
    return subprocess.run(["bash", str(ROOT / "examples" / "slurm" / "study.sbatch"), "--smoke", "--out", str(out)],
                          cwd=cwd, capture_output=True, timeout=600,
                          env=gan_env(cwd, GANCLI_DATA=str(data), SLURM_ARRAY_TASK_ID=str(task), SLURM_SUBMIT_DIR=str(ROOT)))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke study as a cluster runs it: one Slurm array task per model, all at once into the one
    output folder, then study.sh, which finds every model done and adds the real-data floor and the
    table (its log kept for the tests)."""
    base = tmp_path_factory.mktemp("study")
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = synthetic_images(512, side=28, seed=len(split)).squeeze(1).numpy()
        write_idx(base / "mnist" / "mnist", f"{prefix}-images-idx3-ubyte", images)
    with ThreadPoolExecutor(len(MODELS)) as tasks:
        results = list(tasks.map(lambda task: array_task(task, base / "out", base / "mnist", base), range(len(MODELS))))
    for task, result in enumerate(results):
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert f"task {task} of {len(MODELS)}: {MODELS[task]}" in result.stderr.decode()
    result = study(base / "out", base / "mnist")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    (base / "after-the-array.log").write_bytes(result.stderr)
    return base


def test_smoke_study_writes_a_row_per_model_and_sampling(smoke):
    table = (smoke / "results.md").read_text()
    main = table.split("## Over seeds")[0]
    rows = {line.split(" | ")[0][3:-1]: line.split(" | ") for line in main.splitlines() if line.startswith("| `")}
    for model in MODELS:
        assert float(rows[model][3]) >= 0 and (smoke / "out" / "grids" / f"{model}.png").stat().st_size > 0
        assert float(rows[f"{model}+raw"][3]) >= 0 and rows[model][11] == ("2" if model == "fgan-kl" else "1")
        assert rows[f"{model}+raw"][3] != rows[model][3]  # the moving average is another generator
        # a 1-epoch discriminator may reject every draw at 0.6: the row then says so, the study goes on
        assert rows[f"{model}+reject"][3] or "accepted" in rows[f"{model}+reject"][2]
        calibrated = smoke / "out" / "runs" / model / "checkpoint-calibrated.safetensors"
        assert calibrated.is_file() and f"| `{model}` | " in table.split("## Calibration")[1]
    for row in ("wgan-gp+drs", "msgan+reject+mix", "vanilla+reject-uncalibrated"):
        assert row in rows
    assert "real-data floor" in table
    assert (smoke / "out" / "runs" / "fgan-kl" / "checkpoint.safetensors").is_file()


def test_smoke_study_is_restartable(smoke):
    """A second run redoes only what is missing or stale: a deleted sample and its score, and the
    samples and scores of a model trained further (here, its checkpoint touched)."""
    out = smoke / "out"
    score = (out / "scores" / "vanilla.mnist.json").read_text()
    (out / "samples" / "vanilla.safetensors").unlink()
    (out / "scores" / "vanilla.mnist.json").unlink()
    os.utime(out / "runs" / "wgan-gp" / "checkpoint.safetensors")
    checkpoints = {m: (out / "runs" / m / "checkpoint.safetensors").stat().st_mtime_ns for m in MODELS}
    kept = (out / "samples" / "msgan.safetensors").stat().st_mtime_ns
    result = study(out, smoke / "mnist")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    log = result.stderr.decode()
    assert "gan train" not in log and "resuming" not in log and "msgan: sampling" not in log
    assert "wgan-gp: calibrating" in log and "vanilla: calibrating" not in log
    for row in ("vanilla", "wgan-gp", "wgan-gp+drs"):
        assert f"== {row}: sampling" in log and f"== {row}: scoring with mnist" in log
    assert {m: (out / "runs" / m / "checkpoint.safetensors").stat().st_mtime_ns for m in MODELS} == checkpoints
    assert (out / "samples" / "msgan.safetensors").stat().st_mtime_ns == kept
    assert (out / "scores" / "vanilla.mnist.json").read_text() == score  # same seed, same images, same numbers


def test_pipeline_and_interpolate_examples(smoke):
    run = smoke / "out" / "runs" / "vanilla"
    result = example("pipeline.sh", run, 128, cwd=smoke, data=smoke / "mnist")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    scores = json.loads(result.stdout)
    assert scores["n_generated"] == 128 and scores["extractor"] == "mnist-classifier"
    result = example("interpolate.sh", run, smoke / "lerp-slerp", cwd=smoke, data=smoke / "mnist")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    for name in ("lerp.png", "slerp.png", "strip.png", "slerp.gif"):
        assert (smoke / "lerp-slerp" / name).stat().st_size > 0
    assert (smoke / "lerp-slerp" / "lerp.png").read_bytes() != (smoke / "lerp-slerp" / "slerp.png").read_bytes()


def test_pretrain_switch_example(smoke, tmp_path):
    result = example("pretrain_switch.sh", tmp_path / "runs", cwd=tmp_path, data=smoke / "mnist",
                     env={"PRETRAIN_EPOCHS": "1", "KL_EPOCHS": "1"})
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert (tmp_path / "runs" / "js-then-kl" / "checkpoint.safetensors").is_file()
    assert result.stdout.decode().startswith("js-then-kl: {")


def test_divergences_example(smoke, tmp_path):
    result = example("divergences.sh", "--smoke", "--out", tmp_path / "d", cwd=tmp_path, data=smoke / "mnist")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    table = (tmp_path / "d.md").read_text()
    rows = {line.split(" | ")[0][3:-1]: line.split(" | ") for line in table.splitlines() if line.startswith("| `")}
    assert set(rows) == {"alpha2", "js6-kl", "js6-kl+reject"}
    for row in ("alpha2", "js6-kl"):
        assert float(rows[row][2]) >= 0 and rows[row][9] == ("2" if row == "js6-kl" else "1")
        assert "/" in rows[row][7]  # D accuracy on real / fake, from the log
        assert rows[row][8] == f"{float(rows[row][8].split(' @')[0]):.1f} @{rows[row][9]}"  # the per-epoch evaluation's best
    _, meta = __import__("gancli.checkpoint", fromlist=["read_file"]).read_file(
        tmp_path / "d/runs/js6-kl/checkpoint.safetensors", "gan")
    assert meta["config"]["div"] == "kl" and meta["config"]["r1"] == 10 and not meta["config"]["spectral_norm"]


def test_study_table_alone_rewrites_the_table_from_the_scores(smoke):
    """`study.sh --table` writes results.md from what is there and trains, samples and scores nothing."""
    table = smoke / "results.md"
    before = table.read_text()
    table.unlink()
    result = example("study.sh", "--smoke", "--out", smoke / "out", "--table", cwd=smoke, data=smoke / "mnist")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "==" not in result.stderr.decode() and table.read_text() == before


def test_smoke_study_sweeps_the_rejection_threshold(smoke):
    """examples/threshold.py, as study.sh runs it: a point per threshold and calibration, each scored or
    saying why it could not be drawn, the share of training and held-out images D accepts, the figure;
    a critic has no threshold before calibration."""
    for model in ("vanilla", "wgan-gp"):
        sweep = json.loads((smoke / "out" / "threshold" / model / "threshold.json").read_text())
        assert sweep["no rejection"]["accepted"] == 1.0 and sweep["n"] == 64 and sweep["thresholds"] == [0.3, 0.6]
        for curve in ("as trained", "calibrated"):
            assert [p["threshold"] for p in sweep[curve]] == [0.3, 0.6]
            assert all(("fid" in p and "class_kl" in p and 0 < p["accepted"] <= 1) or "accepted in" in p["failed"]
                       or "critic" in p["failed"] for p in sweep[curve])
        calibrated = sweep["real accepted"]["calibrated"]
        assert set(calibrated) == {"train", "held-out test"}
        assert all(0 <= share <= 1 for shares in calibrated.values() for share in shares)
        assert calibrated["train"][0] >= calibrated["train"][1]  # a higher threshold keeps fewer
        assert (smoke / "out" / "threshold" / model / "threshold.png").stat().st_size > 0
    assert sweep["real accepted"]["as trained"] == {}
    assert all("fid" not in p for p in sweep["as trained"])


def test_slurm_array_tasks_fill_the_study_layout(smoke, tmp_path):
    """Each array task trained and scored its model of `study.sh --list` where study.sh looks, so that
    study.sh afterwards trained, sampled and scored nothing of theirs; a task past the list is refused."""
    for model in MODELS:
        assert (smoke / "out" / "runs" / model / "checkpoint-calibrated.safetensors").is_file()
        assert (smoke / "out" / "scores" / f"{model}.mnist.json").is_file()
    after = (smoke / "after-the-array.log").read_text()
    assert [line for line in after.splitlines() if line.startswith("== ")] == [f"== wrote {smoke / 'results.md'}"]
    assert (smoke / "out" / "scores" / "real-floor.mnist.json").is_file()
    beyond = array_task(len(MODELS), tmp_path / "out", smoke / "mnist", tmp_path)
    assert beyond.returncode == 2 and f"the study has {len(MODELS)} models" in beyond.stderr.decode()


def test_fashion_example_trains_evaluates_and_scores_on_fashion_alone(tmp_path):
    """examples/fashion.sh --smoke on synthetic Fashion-MNIST IDX files, beside an MNIST of other
    images: the run is evaluated on the Fashion classifier against Fashion test, its samples scored
    in garments, and a second run of the script redoes nothing."""
    data = tmp_path / "data"
    for name, seed in (("fashion-mnist", 40), ("mnist", 50)):
        for prefix, offset in (("train", 0), ("t10k", 1)):
            images = synthetic_images(256, side=28, seed=seed + offset).squeeze(1).numpy()
            write_idx(data / name, f"{prefix}-images-idx3-ubyte", images if name == "fashion-mnist" else 255 - images)
    result = example("fashion.sh", "--smoke", "--out", tmp_path / "f", cwd=tmp_path, data=data)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    log = [json.loads(line) for line in (tmp_path / "f" / "runs" / "vanilla" / "log.jsonl").read_text().splitlines()]
    said = " ".join(result.stderr.decode().split())
    assert log[-1]["eval_features"] == "fashion-mnist-classifier" and "/10 classes" in said
    for row in ("last", "best", "real-floor"):
        scores = json.loads((tmp_path / "f" / "scores" / f"{row}.fashion-mnist.json").read_text())
        assert scores["extractor"] == "fashion-mnist-classifier" and "Ankle boot" in scores["class_names"]
    assert scores["reference"] == "fashion-mnist"  # the floor: test scored against train
    table = (tmp_path / "fashion.md").read_text()  # beside the output folder, as examples/fashion.md
    assert "| real data (test vs train) |" in table and "| best (epoch 1) |" in table
    assert (tmp_path / "f" / "curves.png").stat().st_size > 0 and (tmp_path / "f" / "grids" / "best.png").stat().st_size > 0
    again = example("fashion.sh", "--smoke", "--out", tmp_path / "f", cwd=tmp_path, data=data)
    assert again.returncode == 0 and "==" not in again.stderr.decode()


def test_frontier_smoke_trains_scores_and_tables_each_target_and_restarts(smoke, tmp_path):
    """examples/frontier.sh --smoke: each recipe file trains (the conv recipe, its ablation without DiffAugment
    and the WGAN-clip one), is sampled from its moving average and scored on the MNIST classifier, a target's
    row also through calibrated DRS; the page holds a line per target and way of sampling, per ablation row,
    and the recipes; a second run redoes nothing. A second worker at once, on a row of the conv target's chain
    (below), waits for the first rather than train a row of it twice."""
    out = tmp_path / "f"
    with ThreadPoolExecutor(2) as workers:
        result, other = workers.map(lambda rows: example("frontier.sh", "--smoke", "--out", out, *rows, cwd=tmp_path, data=smoke / "mnist"),
                                    [(), ("ablation-mnist-conv-r1-0.1-30-epochs",)])
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert other.returncode == 0, other.stderr.decode()[-3000:]
    both = result.stderr.decode() + other.stderr.decode()
    assert both.count("== ablation-mnist-conv-r1-0.1: gan train") == 1
    for row in ("mnist-conv", "mnist-conv+drs", "ablation-mnist-conv-no-diffaug", "mnist-mlp-wgan-clip", "mnist-mlp-wgan-clip+drs"):
        scores = json.loads((out / "scores" / f"{row}.mnist.json").read_text())
        assert scores["extractor"] == "mnist-classifier" and scores["n_generated"] == 256
    calibration = json.loads((out / "scores" / "mnist-mlp-wgan-clip.calibration.json").read_text())
    assert calibration["n"] == 256 and not (out / "scores" / "ablation-mnist-conv-no-diffaug+drs.mnist.json").exists()
    conv, ablated = (read_header(out / "runs" / row / "checkpoint.safetensors").config
                     for row in ("mnist-conv", "ablation-mnist-conv-no-diffaug"))
    assert (conv.arch, conv.diffaug, conv.ema, conv.r1) == ("infogan", "translation", 0.999, 0.1) and ablated.diffaug == ""
    # the conv target's seed 0 trains on (`--from`) from R1's 60-epoch row, that from its 40-epoch row, ... down to
    # its 20-epoch row: each trained first, its run copied whole and resumed, in the smoke variant for 1 epoch more
    chain = ["ablation-mnist-conv-r1-0.1", *(f"ablation-mnist-conv-r1-0.1-{e}-epochs" for e in (30, 40, 60)), "mnist-conv"]
    logs = [(out / "logs" / f"{row}.jsonl").read_text().splitlines() for row in chain]
    for row, (shorter, longer) in zip(chain[1:], itertools.pairwise(logs), strict=True):
        assert longer[:-1] == shorter and len(longer) == len(shorter) + 1
        assert both.count(f"== {row}: trained on from ") == 1 and both.count(f"== {row}: resuming") == 1
    assert not list((out / "runs").glob("*.partial"))
    page = (tmp_path / "frontier.md").read_text()
    lines = {line.split(" | ")[0].lstrip("| "): line for line in page.splitlines() if line.startswith("| ")}
    assert "no Inception score yet" in lines["mnist-conv"] and "not yet run" in lines["fashion-conv"]
    assert lines["mnist-conv+drs"].split(" | ")[6] != lines["mnist-conv"].split(" | ")[6] != ""  # its own classifier FID
    assert lines["ablation-mnist-conv-no-diffaug"].split(" | ")[4] != "" and "not yet run" in lines["ablation-mnist-conv-top-k"]
    assert page.count("```toml") == 4
    again = example("frontier.sh", "--smoke", "--out", out, cwd=tmp_path, data=smoke / "mnist")
    assert again.returncode == 0 and [line for line in again.stderr.decode().splitlines() if line.startswith("==")] == \
        [f"== wrote {tmp_path / 'frontier.md'}"]
    # a fresh clone has no runs/ (git ignores them): the table, rebuilt, keeps each scored row from its committed log
    shutil.rmtree(out / "runs")
    assert example("frontier.sh", "--smoke", "--table", "--out", out, cwd=tmp_path, data=smoke / "mnist").returncode == 0
    assert (tmp_path / "frontier.md").read_text() == page
    listed = example("frontier.sh", "--list", cwd=tmp_path, data=smoke / "mnist").stdout.decode().split()
    assert "mnist-conv-seed2" in listed and "ablation-mnist-conv-no-ema" in listed
    assert example("frontier.sh", "nothing", cwd=tmp_path, data=smoke / "mnist").returncode == 2


def test_conditional_example_trains_both_twins_and_tables_their_class_scores(smoke, tmp_path):
    """examples/conditional.sh --smoke on the smoke study's synthetic MNIST with label files added: the
    conditional model samples 20 of each class, scored with its class accuracy; its twin without."""
    data = tmp_path / "data"
    shutil.copytree(smoke / "mnist", data)
    for prefix in ("train", "t10k"):
        write_idx(data / "mnist", f"{prefix}-labels-idx1-ubyte", np.arange(512) % 10)
    result = example("conditional.sh", "--smoke", "--out", tmp_path / "c", cwd=tmp_path, data=data)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    conditional = json.loads((tmp_path / "c/scores/mlp-conditional.mnist.json").read_text())
    assert conditional["asked_histogram"] == [20] * 10 and "class_accuracy" in conditional
    assert "class_accuracy" not in json.loads((tmp_path / "c/scores/mlp.mnist.json").read_text())
    rows = {line.split(" | ")[0].lstrip("| "): line for line in (tmp_path / "conditional.md").read_text().splitlines()
            if line.startswith("| ")}
    assert rows["mlp-conditional"].split(" | ")[6].endswith("%") and rows["mlp"].split(" | ")[6] == ""  # accuracy
    assert "not yet run" in rows["dcgan"] and (tmp_path / "c/grids/mlp-conditional-10x10.png").stat().st_size > 0
    # the table reads the committed copy of each run's log, so a fresh clone (no runs/) rebuilds it
    log = (tmp_path / "c/logs/mlp-conditional.jsonl").read_text()
    assert log == (tmp_path / "c/runs/mlp-conditional/log.jsonl").read_text()
    assert rows["mlp-conditional"].split(" | ")[-1].startswith(f"{json.loads(log.splitlines()[-1])['images_per_s']:,.0f}")
