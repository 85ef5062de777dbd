"""Images/s of gancli's training loop against a plain PyTorch loop of the same MLP GAN.

The plain loop is written the usual way: torchvision MNIST + DataLoader + ToTensor/Normalize,
a sigmoid discriminator with nn.BCELoss, separate D passes on real and fake. Both run in this
process on the same real MNIST at batch 64. Also reports the fraction of the machine's
measured fp32 GEMM throughput that gancli reaches (~35 MFLOP per image per training step).

    GANCLI_DATA=../shared/data/mnist python benchmarks/train_speed.py [--steps 400]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from gancli.config import make_config
from gancli.data import load_images, resolve_idx
from gancli.models import to_unit_range
from gancli.training import new_state, train_step

FLOP_PER_IMAGE_STEP = 35e6


def gemm_gflops(size: int = 1024, repeats: int = 30) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def gancli_images_per_s(images: torch.Tensor, steps: int, batch: int, objective: str = "vanilla", **options) -> float:
    state = new_state(make_config(objective, batch_size=batch, **options))
    order = torch.randperm(images.shape[0])
    run = lambda i: train_step(state, to_unit_range(images[order[i * batch:(i + 1) * batch]]), 0.0)
    for i in range(20):
        run(i)
    start = time.perf_counter()
    for i in range(steps):
        run(i % (images.shape[0] // batch))
    return steps * batch / (time.perf_counter() - start)


def torchvision_root() -> Path:
    """A temp folder laid out as torchvision's MNIST expects (MNIST/raw, uncompressed)."""
    root = Path(tempfile.mkdtemp(prefix="gancli-bench-"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("images", "labels"):
        for split in ("train", "test"):
            src = resolve_idx("mnist", split, kind)
            dst = raw / src.name.removesuffix(".gz")
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as f, open(dst, "wb") as g:
                shutil.copyfileobj(f, g)
    return root


def plain_images_per_s(root: Path, steps: int, batch: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    torch.manual_seed(0)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    loader = DataLoader(datasets.MNIST(str(root), train=True, transform=tf), batch_size=batch, shuffle=True, drop_last=True)
    lrelu = lambda: nn.LeakyReLU(0.2)
    G = nn.Sequential(nn.Linear(100, 256), lrelu(), nn.Linear(256, 512), lrelu(), nn.Linear(512, 1024), lrelu(),
                      nn.Linear(1024, 784), nn.Tanh())
    D = nn.Sequential(nn.Linear(784, 1024), lrelu(), nn.Linear(1024, 512), lrelu(), nn.Linear(512, 256), lrelu(),
                      nn.Linear(256, 1), nn.Sigmoid())
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    done, start = 0, None
    while done < steps + 20:
        for x, _ in loader:
            if done == 20:
                start = time.perf_counter()
            x = x.view(-1, 784)
            ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)
            fake = G(torch.randn(batch, 100))
            opt_d.zero_grad()
            loss_d = bce(D(x), ones) + bce(D(fake.detach()), zeros)
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = bce(D(fake), ones)
            loss_g.backward()
            opt_g.step()
            done += 1
            if done == steps + 20:
                break
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    images = load_images("mnist")
    root = torchvision_root()
    try:
        # This machine's throughput drifts over a minute: the baseline runs before and after, and each
        # ratio is against their mean.
        before = plain_images_per_s(root, args.steps, args.batch_size)
        ours = gancli_images_per_s(images, args.steps, args.batch_size)
        ours_bf16 = gancli_images_per_s(images, args.steps, args.batch_size, precision="bf16")
        fgan = gancli_images_per_s(images, args.steps, args.batch_size, "fgan")
        fgan_sn = gancli_images_per_s(images, args.steps, args.batch_size, "fgan", spectral_norm=True, r1=0.0)
        fgan_plain = gancli_images_per_s(images, args.steps, args.batch_size, "fgan", r1=0.0)
        plain = (before + plain_images_per_s(root, args.steps, args.batch_size)) / 2
    finally:
        shutil.rmtree(root)
    gflops = gemm_gflops()
    reached = ours * FLOP_PER_IMAGE_STEP / 1e9
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size}, {args.steps} steps each")
    print(f"plain DataLoader loop : {plain:8.0f} images/s (mean of the runs before and after)")
    print(f"gancli training loop  : {ours:8.0f} images/s")
    print(f"ratio                 : {ours / plain:8.2f}x")
    print(f"gancli --precision bf16: {ours_bf16:7.0f} images/s, {ours_bf16 / plain:.2f}x the plain loop")
    print(f"gancli fgan (defaults: R1 10)   : {fgan:7.0f} images/s, {fgan / plain:.2f}x the plain loop")
    print(f"gancli fgan --spectral-norm --r1 0: {fgan_sn:5.0f} images/s, {fgan_sn / plain:.2f}x the plain loop")
    print(f"gancli fgan --r1 0 (plain)      : {fgan_plain:7.0f} images/s, {fgan_plain / plain:.2f}x the plain loop")
    print(f"fp32 GEMM (1024^3)    : {gflops:8.1f} GFLOP/s; gancli reaches {reached:.1f} GFLOP/s = {reached / gflops:.0%}")


if __name__ == "__main__":
    main()
