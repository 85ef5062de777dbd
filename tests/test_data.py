import numpy as np
import pytest
import torch

from gancli import data
from gancli.errors import GancliError
from gancli.streams import Samples, write_samples
from tests.conftest import synthetic_images, write_idx


def fake_mnist(folder, value, n=5, gz=True):
    write_idx(folder, "train-images-idx3-ubyte", np.full((n, 28, 28), value), gz)
    write_idx(folder, "train-labels-idx1-ubyte", np.arange(n) % 10, gz)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.delenv("GANCLI_DATA", raising=False)
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(data, "_download", lambda name: calls.append(name) or "network unreachable")
    return calls


def test_local_folder_wins_over_env_and_cache(tmp_path, monkeypatch, offline):
    fake_mnist(tmp_path / "opt", 1)
    fake_mnist(tmp_path / "env", 2, gz=False)
    fake_mnist(tmp_path / "cache" / "MNIST" / "raw", 3)
    monkeypatch.setenv("GANCLI_DATA", str(tmp_path / "env"))
    assert data.load_images("mnist", str(tmp_path / "opt"))[0, 0, 0, 0] == 1
    assert data.load_images("mnist")[0, 0, 0, 0] == 2
    monkeypatch.delenv("GANCLI_DATA")
    images = data.load_images("mnist")
    assert images[0, 0, 0, 0] == 3 and images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8
    assert offline == []
    assert data.load_labels("mnist").tolist() == [0, 1, 2, 3, 4]


def test_download_is_the_last_resort_and_the_error_names_all_three(tmp_path, offline):
    with pytest.raises(GancliError) as err:
        data.load_images("mnist:test", str(tmp_path / "nowhere"))
    message = str(err.value)
    assert offline == ["mnist"]
    assert "nowhere" in message and str(tmp_path / "cache") in message and "network unreachable" in message


def test_truncated_idx_is_a_user_error(tmp_path, offline):
    fake_mnist(tmp_path, 0, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(GancliError, match="truncated"):
        data.load_images("mnist", str(tmp_path))


def test_folder_and_samples_file_sources_give_the_same_pixels(tmp_path):
    images = synthetic_images(10)
    write_samples(Samples(images), str(tmp_path / "pngs"))
    write_samples(Samples(images), str(tmp_path / "s.safetensors"))
    assert torch.equal(data.load_images(str(tmp_path / "pngs")), images)
    assert torch.equal(data.load_images(str(tmp_path / "s.safetensors")), images)


def test_unknown_split_is_a_user_error():
    with pytest.raises(GancliError, match="unknown split"):
        data.load_images("mnist:validation")
