"""The FID Inception read from pytorch-fid's .pth layout and from TorchScript, on random weights
(the real weights are not shipped; benchmarks/score_speed.py checks them on MNIST)."""

import json

import numpy as np
import pytest
import torch

from gancli.features import _fid_blocks, fid_inception, inception_extractor, state_dict_from_torchscript
from gancli.streams import Samples, write_samples
from tests.conftest import shell, synthetic_images


@pytest.fixture(scope="module")
def fid_state_dict():
    torch.manual_seed(0)
    net = _fid_blocks().to_empty(device="cpu")  # built on the meta device: given storage, then initialised
    for module in net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    with torch.no_grad():  # batch-norm statistics away from (0, 1), so folding them is really exercised
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.2, 0.2)
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_pth_features_equal_the_unfolded_network(fid_state_dict, tmp_path):
    torch.save(fid_state_dict, tmp_path / "pt_inception.pth")
    images = synthetic_images(3, side=28)
    features, predicted = inception_extractor(str(tmp_path / "pt_inception.pth"), precision="fp32").run(images)
    with torch.no_grad():
        x = 2 * torch.nn.functional.interpolate(images.float().div(255).expand(-1, 3, -1, -1), size=299,
                                                mode="bilinear", align_corners=False) - 1
        expected = fid_inception(fid_state_dict)(x).numpy()
    assert features.shape == (3, 2048) and predicted is None
    np.testing.assert_allclose(features, expected, rtol=1e-3, atol=1e-4)


def test_tf_layout_torchscript_maps_onto_pytorch_fid_names(fid_state_dict):
    """A TF-ported TorchScript lists each convolution as (weight, beta, mean, var) in graph order."""
    convs = [k[: -len(".conv.weight")] for k in fid_state_dict if k.endswith(".conv.weight")]

    class TFLayout(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for i, name in enumerate(convs):
                for part, key in (("weight", "conv.weight"), ("beta", "bn.bias"), ("mean", "bn.running_mean"),
                                  ("var", "bn.running_var")):
                    self.register_buffer(f"conv{i}_{part}", fid_state_dict[f"{name}.{key}"])

        def forward(self, x):
            return x

    converted = state_dict_from_torchscript(torch.jit.script(TFLayout()))
    for name in convs:
        for key in ("conv.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
            assert torch.equal(converted[f"{name}.{key}"], fid_state_dict[f"{name}.{key}"])
        assert torch.equal(converted[f"{name}.bn.weight"], torch.ones_like(fid_state_dict[f"{name}.bn.bias"]))
    assert state_dict_from_torchscript(torch.jit.script(torch.nn.Linear(2, 2))) is None


def test_score_reads_pth_and_refuses_other_files(fid_state_dict, tmp_path):
    torch.save(fid_state_dict, tmp_path / "pt_inception.pth")
    write_samples(Samples(synthetic_images(4, side=28, seed=1)), str(tmp_path / "a.safetensors"))
    write_samples(Samples(synthetic_images(4, side=28, seed=2)), str(tmp_path / "b.safetensors"))
    result = shell("GANCLI_INCEPTION_WEIGHTS=pt_inception.pth gan score a.safetensors --ref b.safetensors "
                       "--precision fp32 --json", tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    values = json.loads(result.stdout)
    assert values["extractor"] == "inception-tf2015-pool3" and values["n_generated"] == 4 and values["fid"] > 0
    (tmp_path / "junk.pth").write_bytes(b"not weights")
    result = shell("gan score a.safetensors --ref b.safetensors --inception-weights junk.pth", tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1 and "neither" in err, err
