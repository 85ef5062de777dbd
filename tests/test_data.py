import hashlib

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
    fake_mnist(tmp_path / "opt" / "mnist", 1)
    fake_mnist(tmp_path / "env" / "mnist", 2, gz=False)
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
    fake_mnist(tmp_path / "mnist", 0, gz=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
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


def test_a_flat_folder_of_mnist_files_does_not_serve_fashion_mnist(tmp_path, monkeypatch, offline):
    """Flat IDX files are read for a dataset only where their fingerprint is its official file's:
    the datasets share file names, so a flat folder of MNIST would otherwise pass for Fashion-MNIST."""
    fake_mnist(tmp_path / "flat", 1)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    monkeypatch.setattr(data, "FINGERPRINTS", {"mnist": {stem: data.idx_fingerprint(tmp_path / "flat" / f"{stem}.gz")
                                                         for stem in stems}})
    assert data.load_images("mnist", str(tmp_path / "flat"))[0, 0, 0, 0] == 1  # known to be MNIST's
    for source in ("fashion-mnist", "kmnist"):
        with pytest.raises(GancliError) as err:
            data.load_images(source, str(tmp_path / "flat"))
        name = source.partition(":")[0]
        assert f"holds IDX files that are not {name}'s" in err.value.message
        assert f"in {tmp_path / 'flat' / name}/" in err.value.hint
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "flat"))  # the cache folder follows the same rule
    with pytest.raises(GancliError, match="holds IDX files that are not fashion-mnist's"):
        data.load_images("fashion-mnist")
    assert data.load_images("mnist")[0, 0, 0, 0] == 1


def test_a_flat_file_whose_fingerprint_differs_from_the_table_is_refused(tmp_path, monkeypatch, offline):
    fake_mnist(tmp_path, 1)
    other = tmp_path / "other"
    fake_mnist(other, 2)
    monkeypatch.setattr(data, "FINGERPRINTS", {"mnist": {"train-images-idx3-ubyte": data.idx_fingerprint(
        other / "train-images-idx3-ubyte.gz")}})
    with pytest.raises(GancliError, match="holds IDX files that are not mnist's"):
        data.load_images("mnist", str(tmp_path))


def test_subfolders_serve_each_dataset_from_one_folder_beside_flat_files(tmp_path, offline):
    fake_mnist(tmp_path, 9)  # files of unknown content: no dataset's
    fake_mnist(tmp_path / "mnist", 1)
    fake_mnist(tmp_path / "fashion-mnist", 2, gz=False)
    fake_mnist(tmp_path / "KMNIST" / "raw", 3)  # torchvision's layout
    for source, value in (("mnist", 1), ("fashion-mnist", 2), ("kmnist", 3)):
        assert data.load_images(source, str(tmp_path))[0, 0, 0, 0] == value
    assert offline == []


def test_the_fingerprint_reads_the_decompressed_head_only(tmp_path):
    """sha256 of the first FINGERPRINT_BYTES decompressed bytes: gzipped or not, the same; a change
    past the head, none; a change in it, another."""
    head = np.zeros((10, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "gz", "f", head)
    write_idx(tmp_path / "plain", "f", head, gz=False)
    fingerprint = data.idx_fingerprint(tmp_path / "gz" / "f.gz")
    assert fingerprint == data.idx_fingerprint(tmp_path / "plain" / "f")
    raw = (tmp_path / "plain" / "f").read_bytes()
    assert fingerprint == hashlib.sha256(raw[: data.FINGERPRINT_BYTES]).hexdigest()[:16]
    past, within = bytearray(raw), bytearray(raw)
    past[-1], within[100] = 255, 255
    (tmp_path / "past").write_bytes(past)
    (tmp_path / "within").write_bytes(within)
    assert data.idx_fingerprint(tmp_path / "past") == fingerprint != data.idx_fingerprint(tmp_path / "within")
