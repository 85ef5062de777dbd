"""What each frontier option costs: training images/s with it against the same loop without it, per
architecture, all loops in this process in turns (train_speed.images_per_s), on real MNIST at batch 64.

    GANCLI_DATA=../shared/data/mnist python benchmarks/option_cost.py [--steps 300] [--rounds 3] [--arch mlp,dcgan,infogan]
"""

from __future__ import annotations

import argparse
import os

import torch
from train_speed import gancli_loop, images_per_s

from gancli.data import load_images

# option label -> TrainConfig fields; each is timed against the architecture's plain vanilla loop, as in
# epoch 100 (where --top-k 0.5 has annealed to its k of 32)
OPTIONS = {
    "--diffaug translation": {"diffaug": "translation"},
    "--diffaug translation,cutout": {"diffaug": "translation,cutout"},
    "--top-k 0.5": {"top_k": 0.5},
    "--ema 0.999": {"ema": 0.999},
    "--r1 10": {"r1": 10.0},
    "--spectral-norm": {"spectral_norm": True},
    "--precision bf16": {"precision": "bf16"},
    "--d-arch infogan": {"d_arch": "infogan"},  # infogan's own D: the plain loop again, a check of the noise
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arch", default="mlp,dcgan,infogan")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    images, batch = load_images("mnist"), 64
    print(f"threads {torch.get_num_threads()}, batch {batch}, {args.steps} steps each in {args.rounds} turns")
    for arch in args.arch.split(","):
        loops = {label: gancli_loop(images, batch, device=args.device, epoch=100, arch=arch, **fields)
                 for label, fields in {"plain": {}, **OPTIONS}.items()}
        speeds = images_per_s(loops, args.steps, batch, args.rounds)
        base = speeds.pop("plain")
        print(f"--arch {arch}: {base:6.0f} images/s without options")
        for label, speed in speeds.items():
            print(f"  {label:30s}: {speed:6.0f} images/s, {speed / base:.2f}x")


if __name__ == "__main__":
    main()
