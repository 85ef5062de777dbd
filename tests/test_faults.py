"""Faults a user meets: bad inputs of every kind, damaged files, a full disk, kill -9 mid-training."""

import functools
import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gancli import checkpoint as ckpt
from gancli.errors import GancliError
from gancli.inference import networks, open_checkpoint
from gancli.runs import read_log
from gancli.state import new_state, restore_state, save_state
from gancli.streams import Samples, read_samples, write_samples
from gancli.training import train
from tests.conftest import TINY, gan_env, synthetic_images, tiny_config


def forged(path, raw_checkpoint: bytes, edit) -> None:
    """A copy of a checkpoint whose gancli metadata `edit(meta)` changed."""
    tensors, meta = ckpt.decode(raw_checkpoint, "ok", "gan")
    edit(meta)
    path.write_bytes(ckpt.encode(tensors, meta))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of good and bad inputs; no case may change a byte of it."""
    d = tmp_path_factory.mktemp("inputs")
    train(new_state(tiny_config()), synthetic_images(), d / "runs" / "ok")
    raw = (d / "runs/ok/checkpoint.safetensors").read_bytes()
    write_samples(Samples(synthetic_images(64)), str(d / "tiny.safetensors"))
    (d / "junk.safetensors").write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(300)))
    (d / "empty.safetensors").write_bytes(b"")
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    (d / "huge-header.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    forged(d / "mismatch.safetensors", raw, lambda m: m["config"].update(z_dim=9))
    forged(d / "no-config.safetensors", raw, lambda m: m.pop("config"))
    forged(d / "bad-config.safetensors", raw, lambda m: m["config"].update(z_dim="abc"))
    forged(d / "huge-config.safetensors", raw, lambda m: m["config"].update(g_hidden=[2**24]))
    forged(d / "impossible-config.safetensors", raw, lambda m: m["config"].update(z_dim=2**56))
    tensors, meta = ckpt.decode(raw, "ok", "gan")
    (d / "half-weights.safetensors").write_bytes(ckpt.encode({k: v.half() if k.startswith(("G.", "G_ema.")) else v
                                                              for k, v in tensors.items()}, meta))
    forged(d / "future.safetensors", raw, lambda m: m.update(schema=99))
    forged(d / "no-epoch.safetensors", raw, lambda m: m.pop("epoch"))
    forged(d / "bad-optimizer.safetensors", raw, lambda m: m.update(optimizers={"G": 1}))
    (d / "no-meta.safetensors").write_bytes(safetensors.torch.save({"x": torch.zeros(2)}))
    (d / "float-images.safetensors").write_bytes(ckpt.encode({"images": torch.zeros(4, 1, 8, 8)}, {"kind": "samples"}))
    (d / "no-images.safetensors").write_bytes(ckpt.encode({"z": torch.zeros(4, 8)}, {"kind": "samples"}))
    (d / "bad-score.safetensors").write_bytes(ckpt.encode(
        {"images": torch.zeros(4, 1, 8, 8, dtype=torch.uint8), "score": torch.zeros(3)}, {"kind": "samples"}))
    (d / "big-images.safetensors").write_bytes(ckpt.encode(
        {"images": torch.zeros(4, 1, 12, 12, dtype=torch.uint8)}, {"kind": "samples"}))
    for folder in ("empty", "texts", "mixed", "fakepng", "norun"):
        (d / folder).mkdir()
    (d / "texts/notes.txt").write_text("hello")
    (d / "fakepng/a.png").write_text("not a png")
    from PIL import Image

    Image.new("L", (8, 8)).save(d / "mixed/a.png")
    Image.new("L", (9, 9)).save(d / "mixed/b.png")
    (d / "afile").write_text("a file where a folder should be")
    (d / "existing.txt").write_text("keep me")
    return d


# (command line with {d} for the inputs folder, stdin or None, what stderr must say)
CASES = [
    # damaged, forged and wrong-kind checkpoints
    ("resume {d}/junk.safetensors", None, "not a readable safetensors"),
    ("resume {d}/empty.safetensors", None, "is empty"),
    ("resume {d}/truncated.safetensors", None, "not a readable safetensors"),
    ("resume {d}/huge-header.safetensors", None, "header runs past the end"),
    ("resume {d}/tiny.safetensors", None, "holds 'samples', expected 'gan'"),
    ("resume {d}/missing.safetensors", None, "no such file"),
    ("resume {d}/norun", None, "no such file"),
    ("resume", None, "no latest run"),
    ("resume {d}/mismatch.safetensors", None, "weights do not match"),
    ("resume {d}/no-config.safetensors", None, "no readable config"),
    ("resume {d}/bad-config.safetensors", None, "config field z_dim"),
    ("resume {d}/huge-config.safetensors", None, "weights do not match"),
    ("resume {d}/impossible-config.safetensors", None, "must be at most 16,777,216"),
    ("resume {d}/future.safetensors", None, "schema 99"),
    ("resume {d}/no-epoch.safetensors", None, "training state is unreadable"),
    ("resume {d}/bad-optimizer.safetensors", None, "training state is unreadable"),
    ("resume {d}/no-meta.safetensors", None, "without gancli metadata"),
    ("sample {d}/junk.safetensors -n 4 -o x.safetensors", None, "not a readable safetensors"),
    ("sample {d}/truncated.safetensors -n 4 -o x.safetensors", None, "not a readable safetensors"),
    ("sample {d}/mismatch.safetensors -n 4 -o x.safetensors", None, "weights do not match"),
    ("sample {d}/huge-config.safetensors -n 4 -o x.safetensors", None, "weights do not match"),
    ("sample {d}/half-weights.safetensors -n 4 -o x.safetensors", None, "weights do not match"),
    ("interpolate {d}/truncated.safetensors -o g.png", None, "not a readable safetensors"),
    ("filter --ckpt {d}/tiny.safetensors --reject 0.5 {d}/tiny.safetensors -o x.safetensors", None, "expected 'gan'"),
    # damaged and forged streams
    ("score --features mnist", b"garbage that is no stream", "not a readable safetensors"),
    ("score --features mnist", b"", "stdin is empty"),
    ("filter --ckpt {d}/runs/ok --reject 0.5 -o x.safetensors", b"\x00" * 40, "not a readable safetensors"),
    ("score {d}/truncated.safetensors --features mnist", None, "not a readable safetensors"),
    ("score {d}/float-images.safetensors --features mnist", None, "needs `images` as uint8"),
    ("score {d}/no-images.safetensors --features mnist", None, "needs `images` as uint8"),
    ("score {d}/bad-score.safetensors --features mnist", None, "`score` must be float32 [N]"),
    ("score {d}/runs/ok/checkpoint.safetensors --features mnist", None, "expected 'samples'"),
    ("filter --ckpt {d}/runs/ok --keep-top 0.5 {d}/big-images.safetensors -o x.safetensors", None, "discriminator expects"),
    # folders and data sources
    ("compare {d}/runs/ok/checkpoint.safetensors {d}/tiny.safetensors", None, "is a binary file, not JSON"),
    ("compare {d}/mixed/a.png {d}/mixed/b.png", None, "is a binary file, not JSON"),
    ("compare - {d}/existing.txt", b'{"extractor": "x", "fid": NaN}', "stdin: fid is nan, not a finite number"),
    ("compare - {d}/existing.txt", b'{"extractor": "x", "fid": "12"}', "stdin: fid is str '12', not a number"),
    ("compare - {d}/existing.txt", b'{"extractor": "x", "fid": [1]}', "stdin: fid is list '[1]', not a number"),
    ("compare - {d}/existing.txt", b"[" * 100000, "stdin is not JSON"),
    ("score --ref {d}/tiny.safetensors", ckpt.encode({"images": torch.zeros(4, 4, 8, 8, dtype=torch.uint8)}, {"kind": "samples"}),
     "have 4 channels; the Inception takes grey (1) or RGB (3)"),
    ("train vanilla --data {d}/empty", None, "no images in folder"),
    ("train vanilla --data {d}/texts", None, "1 other files"),
    ("train vanilla --data {d}/mixed", None, "differ in size"),
    ("train vanilla --data {d}/fakepng", None, "not a readable image"),
    ("train vanilla --data nosuchset", None, "no such file, folder or dataset"),
    ("train vanilla --data mnist:validation", None, "unknown split"),
    ("score {d}/empty --features mnist", None, "no images in folder"),
    ("score {d}/tiny.safetensors --ref {d}/mixed --features mnist", None, "differ in size"),
    ("resume {d}/runs/ok --data {d}/big-images.safetensors", None, "the networks expect"),
    # numbers out of range: usage errors
    ("train vanilla --epochs 0", None, "--epochs"),
    ("train vanilla --epochs -3", None, "--epochs"),
    ("resume {d}/runs/ok --epochs -3", None, "--epochs"),
    ("resume {d}/runs/ok --until-epoch 0", None, "--until-epoch"),
    ("train vanilla --batch-size 0", None, "--batch-size"),
    ("train vanilla --lr 0", None, "--lr"),
    ("train vanilla --lr-d -1", None, "--lr-d"),
    ("train vanilla --z-dim 0", None, "--z-dim"),
    ("train vanilla --conv-width 0", None, "--conv-width"),
    ("train vanilla --d-dropout 1", None, "--d-dropout"),
    ("train vanilla --n-critic 0", None, "--n-critic"),
    ("train vanilla --clip-grad-norm -1", None, "--clip-grad-norm"),
    ("train vanilla --clip-weights -0.1", None, "--clip-weights"),
    ("train vanilla --gp-lambda -1", None, "--gp-lambda"),
    ("train vanilla --ms-lambda -1", None, "--ms-lambda"),
    ("train vanilla --ms-every 0", None, "--ms-every"),
    ("train vanilla --d-weight-decay -1", None, "--d-weight-decay"),
    ("pretrain --epochs 0", None, "--epochs"),
    ("score {d}/tiny.safetensors --k 0", None, "--k"),
    ("score {d}/tiny.safetensors -n 1", None, "-n"),
    ("score {d}/tiny.safetensors --batch-size 0", None, "--batch-size"),
    ("sample {d}/runs/ok -n 0", None, "-n"),
    ("sample {d}/runs/ok --reject 1.5", None, "--reject"),
    ("sample {d}/runs/ok --reject 0", None, "--reject"),
    ("sample {d}/runs/ok --keep-top 0", None, "--keep-top"),
    ("sample {d}/runs/ok --keep-top 1.5", None, "--keep-top"),
    ("sample {d}/runs/ok --truncation 0", None, "--truncation"),
    ("sample {d}/runs/ok --batch-size 0", None, "--batch-size"),
    ("sample {d}/runs/ok --drs-percentile 101", None, "--drs-percentile"),
    ("sample {d}/runs/ok --max-draws 0", None, "--max-draws"),
    ("interpolate {d}/runs/ok --steps 1", None, "--steps"),
    ("interpolate {d}/runs/ok --pairs 0", None, "--pairs"),
    ("filter --ckpt {d}/runs/ok --batch-size 0 --keep-top 0.5", None, "--batch-size"),
    # malformed values and choices
    ("train vanilla --betas 0.5", None, "--betas takes 2"),
    ("train vanilla --betas 1.5,0.9", None, "--betas takes two numbers in [0, 1)"),
    ("train vanilla --g-hidden 32,abc", None, "--g-hidden takes comma-separated"),
    ("train fgan --div alpha --alpha 1", None, "--alpha must not be 0 or 1"),
    ("train vanilla --div kl", None, "--div applies to fgan"),
    ("interpolate {d}/runs/ok --seeds 1,x -o g.png", None, "--seeds takes comma-separated"),
    ("train bogus", None, "bogus"),
    ("train fgan --div bogus", None, "--div"),
    ("train vanilla --optimizer adamw", None, "--optimizer"),
    ("train vanilla --arch resnet", None, "--arch"),
    ("train vanilla --device tpu", None, "--device"),
    ("score {d}/tiny.safetensors --features pixels", None, "--features"),
    ("score {d}/tiny.safetensors --precision fp16", None, "--precision"),
    ("sample {d}/runs/ok --reject-method mh", None, "--reject-method"),
    ("interpolate {d}/runs/ok --mode cubic", None, "--mode"),
    # conflicting, locked, unwritable or clashing choices
    ("sample {d}/runs/ok -n 4 -o {d}/texts", None, "already holds files"),
    ("filter --ckpt {d}/runs/ok --keep-top 0.5 {d}/tiny.safetensors -o {d}/texts", None, "already holds files"),
    ("interpolate {d}/runs/ok --pairs 2 -o {d}/texts", None, "already holds files"),
    ("sample {d}/runs/ok -n 4 -o samples.npz", None, "no .npz files"),
    ("sample {d}/runs/ok -n 4 -o x.docx", None, "no .docx files"),
    ("interpolate {d}/runs/ok --pairs 2 -o x.jpg", None, "no .jpg files"),
    ("sample {d}/runs/ok -n 4 -o x.safetensors --grid g.jpg", None, "--grid g.jpg: writes .png files"),
    ("interpolate {d}/runs/ok --pairs 2 -o {d}/nofolder/g.png", None, "no folder"),
    ("interpolate {d}/runs/ok --pairs 2 -o {d}/nofolder/a.gif", None, "no folder"),
    ("sample {d}/runs/ok -n 4 --truncation inf -o x.safetensors", None, "--truncation takes a finite bound"),
    ("sample {d}/runs/ok --reject 0.6 --keep-top 0.5", None, "exclude each other"),
    ("filter --ckpt {d}/runs/ok {d}/tiny.safetensors -o x.safetensors", None, "exactly one of"),
    ("resume {d}/runs/ok --d-dropout 0.3", None, "cannot change d_dropout"),
    ("resume {d}/runs/ok --g-hidden 64", None, "cannot change g_hidden"),
    ("resume {d}/runs/ok --epochs 1 --until-epoch 3", None, "exclude each other"),
    ("train vanilla --data {d}/tiny.safetensors --runs {d}/afile", None, "cannot create a run"),
    ("train vanilla --data {d}/tiny.safetensors --runs {d}/afile/runs", None, "cannot create a run"),
    ("train vanilla --data {d}/tiny.safetensors --runs {d}/runs --name ok", None, "exists"),
    ("sample {d}/runs/ok -n 4 -o {d}/afile/x.safetensors", None, "is a file, not a folder"),
    ("sample {d}/runs/ok -n 4 -o {d}/existing.txt", None, "exists and is not a folder"),
    ("sample {d}/runs/ok -n 4 -o x.safetensors --grid {d}/nofolder/g.png", None, "no folder"),
    ("sample {d}/runs/ok -n 4 -o {d}/empty --grid {d}/empty/g.png", None, "would mix with the images"),
    ("filter --ckpt {d}/runs/ok --keep-top 0.5 {d}/tiny.safetensors -o {d}/existing.txt", None, "not a folder"),
    # evaluation, runs and plots
    ("train vanilla --data {d}/tiny.safetensors --eval-every 1", None, "gancli ships those of mnist, fashion-mnist"),
    ("train vanilla --eval-every -1", None, "--eval-every"),
    ("train vanilla --eval-n 1", None, "--eval-n"),
    ("train vanilla --ema 1", None, "--ema"),
    ("calibrate {d}/junk.safetensors --ref {d}/tiny.safetensors", None, "not a readable safetensors"),
    ("calibrate {d}/runs/ok -n 1", None, "-n"),
    ("calibrate {d}/runs/ok --ref mnist[:100]", None, "overlaps the run's training data"),
    ("calibrate {d}/runs/ok --ref {d}/tiny.safetensors[:3]", None, "--ref"),
    ("calibrate {d}/runs/ok --ref {d}/empty", None, "no images in folder"),
    ("calibrate {d}/runs/ok --ref {d}/tiny.safetensors -o {d}/runs/ok/checkpoint.safetensors", None, "the checkpoint itself"),
    ("train vanilla --ema -0.1", None, "--ema"),
    ("sample {d}/runs/ok --best -n 4 -o x.safetensors", None, "has no best.safetensors"),
    ("sample {d}/runs/ok/checkpoint.safetensors --best -n 4 -o x.safetensors", None, "is not a run folder"),
    ("runs {d}/nowhere", None, "no runs folder"),
    ("plot {d}/nowhere", None, "no run folder"),
    ("plot {d}/runs/ok -o curves.jpg", None, ".png, .svg, .pdf"),
    ("plot {d}/runs/ok -o {d}/nofolder/c.png", None, "no folder"),
    ("plot {d}/runs/ok {d}/runs/ok --grids -o e.gif", None, "animates one run"),
    ("plot {d}/runs/ok --grids -o e.png", None, "writes an animated .gif"),
    ("plot {d}/empty", None, "no epoch logged yet"),
    ("plot" + " {d}/runs/ok" * 11, None, "tells up to 10 apart"),
]


def fingerprint(folder) -> dict:
    return {str(p): (os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("command, stdin, needle", CASES, ids=[c[0].replace("{d}/", "") for c in CASES])
def test_a_bad_input_ends_in_one_clean_error_and_changes_no_file(cli, bad, command, stdin, needle):
    before = fingerprint(bad)
    args = [a.format(d=bad) for a in command.split()]
    if args[0] in ("train", "pretrain", "resume") and "--device" not in args:
        args += ["--device", "cpu"]
    result = cli(*args, input=stdin)
    err = result.stderr
    assert isinstance(result.exception, SystemExit) and "Traceback" not in err + result.stdout, err
    assert result.exit_code in (1, 2), (result.exit_code, err)
    if result.exit_code == 1:
        assert err.count("\n") == 1 and err.startswith(f"gan {args[0]}: error: "), err
    else:
        assert err.startswith("Usage: gan"), err
    assert needle in " ".join(err.split()), err  # the usage box wraps long lines
    assert fingerprint(bad) == before


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 50


# Fuzzing the readers: whatever the bytes, a GancliError or a result, never another exception.
@functools.cache
def good_checkpoint() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.safetensors"
        save_state(path, new_state(tiny_config()))
        return path.read_bytes()


def read_as_everything(raw: bytes, tmp_path) -> None:
    """Every reader of gancli files on `raw`: the samples reader, and the one checkpoint reader with what
    consumes its record (the networks for inference, the training state for resume, the header reader
    of `gan runs`); each may refuse it with a GancliError, nothing else."""
    try:
        read_samples(raw, "fuzz")
    except GancliError:
        pass
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(raw)
    ckpt.read_header(path)  # None or a header, never an exception
    try:
        record = ckpt.decode_checkpoint(raw, "fuzz")
        networks(record, "fuzz")
        restore_state(record, "fuzz", record.config, record.progress, parent=None, keep_optimizer=True)
    except GancliError:
        pass


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
FUZZ = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(raw=st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path, raw):
    read_as_everything(raw, tmp_path)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_mutated_checkpoint_bytes(tmp_path, edits):
    raw = bytearray(good_checkpoint())
    for position, value in edits:
        raw[position % len(raw)] = value
    read_as_everything(bytes(raw), tmp_path)


@FUZZ
@given(field=st.sampled_from(["config", "epoch", "step", "batch_in_epoch", "totals", "optimizers", "parent", "kind",
                              "schema", "z_dim", "g_hidden", "betas", "objective", "epochs", "image_shape"]),
       value=JSON)
@example(field="z_dim", value=2**56)  # a layer torch cannot describe: was a RuntimeError, not a GancliError
def test_fuzz_forged_metadata(tmp_path, field, value):
    tensors, meta = ckpt.decode(good_checkpoint(), "good", "gan")
    (meta["config"] if field in meta["config"] else meta)[field] = value
    read_as_everything(ckpt.encode(tensors, meta), tmp_path)


@FUZZ
@given(header=JSON, length_slack=st.integers(-16, 2**63 - 1))
def test_fuzz_forged_headers(tmp_path, header, length_slack):
    body = json.dumps(header).encode()
    claimed = max(0, min(len(body) + length_slack, 2**64 - 1))
    read_as_everything(struct.pack("<Q", claimed) + body + b"\x00" * 64, tmp_path)


def test_a_forged_config_claiming_huge_layers_allocates_nothing(bad):
    """2^24-wide layers would be 2^36 bytes of weights: refused from the shapes before building them."""
    probe = ("import resource, sys; from gancli.inference import open_checkpoint\n"
             "try: open_checkpoint(sys.argv[1], 'cpu')\nexcept Exception as e: print(type(e).__name__)\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", probe, str(bad / "huge-config.safetensors")], capture_output=True,
                            timeout=120, env=gan_env(bad))
    kind, peak_kib = result.stdout.decode().split()
    assert kind == "GancliError" and int(peak_kib) < 2 * 1024 * 1024, result.stdout  # under 2 GiB, torch included


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(cli, tiny_data, tmp_path, monkeypatch):
    assert cli("train", "vanilla", "--data", tiny_data, *TINY, "--epochs", "1", "--name", "a").exit_code == 0
    checkpoint = tmp_path / "runs/a/checkpoint.safetensors"
    before = checkpoint.read_bytes()
    real_fsync = os.fsync

    def disk_full(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".checkpoint.safetensors."):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ckpt.os, "fsync", disk_full)
    result = cli("resume", "runs/a", "--epochs", "1", "--device", "cpu")
    assert result.exit_code == 1 and result.stderr.count("\n") == 2, result.stderr  # the run's line, then the error
    assert result.stderr.splitlines()[-1] == ("gan resume: error: cannot write runs/a/checkpoint.safetensors: No space left "
                                              "on device; the previous checkpoint.safetensors is unchanged (free some disk "
                                              "space or fix the folder's permissions)")
    assert checkpoint.read_bytes() == before
    assert not [p for p in checkpoint.parent.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(ckpt.os, "fsync", real_fsync)
    assert cli("resume", "runs/a", "--epochs", "1", "--device", "cpu").exit_code == 0  # the extra log line is dropped
    assert [r["epoch"] for r in read_log(tmp_path / "runs/a")] == [1, 2]


def test_kill_9_at_random_moments_never_loses_a_checkpoint(tmp_path, tiny_data):
    """Three kills at random moments of a long tiny run, each followed by a resume; then it finishes."""
    epochs, rng = 50, random.Random(11)
    command = [sys.executable, "-m", "gancli", "train", "vanilla", "--data", str(tiny_data), *TINY,
               "--epochs", str(epochs), "--name", "k"]
    run = tmp_path / "runs/k"
    lines = lambda: (run / "log.jsonl").read_text().count("\n") if (run / "log.jsonl").exists() else 0
    for _ in range(3):
        logged = lines()
        proc = subprocess.Popen(command, cwd=tmp_path, env=gan_env(tmp_path), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while lines() <= logged + 1 and time.time() < deadline:  # past the imports, into training
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _, meta = ckpt.read_file(run / "checkpoint.safetensors", "gan")  # loads after every kill
        open_checkpoint(run / "checkpoint.safetensors", "cpu")
        command = [sys.executable, "-m", "gancli", "resume", str(run), "--until-epoch", str(epochs), "--device", "cpu"]
    assert meta["epoch"] < epochs, "the kills came too late to test anything"
    done = subprocess.run(command, cwd=tmp_path, env=gan_env(tmp_path), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    _, meta = ckpt.read_file(run / "checkpoint.safetensors", "gan")
    logged = [r["epoch"] for r in read_log(run)]
    assert meta["epoch"] == epochs and logged == list(range(1, epochs + 1))
