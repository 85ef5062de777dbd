"""Images/s of gancli's training loop against a plain PyTorch loop of the same MLP GAN.

The plain loop is written the usual way: torchvision MNIST + DataLoader + ToTensor/Normalize,
a sigmoid discriminator with nn.BCELoss, separate D passes on real and fake. Both run in this
process on the same real MNIST at batch 64, in turns (--rounds), so that the machine's drift
over the minutes of the benchmark falls on every loop alike. Also reports the fraction of the machine's
measured fp32 GEMM throughput that gancli reaches (~35 MFLOP per image per training step).

    GANCLI_DATA=../shared/data/mnist python benchmarks/train_speed.py [--steps 400] [--rounds 6]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
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


def gancli_loop(images: torch.Tensor, batch: int, objective: str = "vanilla", **options) -> Callable[[int], None]:
    """steps -> trains that many more steps of gancli's loop."""
    state = new_state(make_config(objective, batch_size=batch, **options))
    order, per_epoch, done = torch.randperm(images.shape[0]), images.shape[0] // batch, [0]

    def run(steps: int) -> None:
        for _ in range(steps):
            i = done[0] % per_epoch
            train_step(state, to_unit_range(images[order[i * batch:(i + 1) * batch]]), 0.0)
            done[0] += 1

    return run


def images_per_s(loops: dict[str, Callable[[int], None]], steps: int, batch: int, rounds: int = 1) -> dict[str, float]:
    """Each loop's images/s over `steps` steps, trained in `rounds` turns taken in order: the
    machine's throughput drifts by 15% over minutes, and in turns the drift falls on every loop alike."""
    for run in loops.values():
        run(20)  # warm-up: allocator, kernels, optimizer state
    per_turn = max(1, steps // rounds)
    seconds = dict.fromkeys(loops, 0.0)
    for _ in range(rounds):
        for name, run in loops.items():
            start = time.perf_counter()
            run(per_turn)
            seconds[name] += time.perf_counter() - start
    return {name: per_turn * rounds * batch / spent for name, spent in seconds.items()}


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


def plain_loop(root: Path, batch: int) -> Callable[[int], None]:
    """steps -> trains that many more steps of the usual torchvision + DataLoader loop."""
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
    batches = (x for _ in itertools.count() for x, _ in loader)
    ones, zeros = torch.ones(batch, 1), torch.zeros(batch, 1)

    def run(steps: int) -> None:
        for _ in range(steps):
            x = next(batches).view(-1, 784)
            fake = G(torch.randn(batch, 100))
            opt_d.zero_grad()
            loss_d = bce(D(x), ones) + bce(D(fake.detach()), zeros)
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = bce(D(fake), ones)
            loss_g.backward()
            opt_g.step()

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6, help="turns the steps are split into, taken loop by loop")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    images = load_images("mnist")
    root = torchvision_root()
    try:
        b = args.batch_size
        loops = {"plain DataLoader loop": plain_loop(root, b),
                 "gancli vanilla": gancli_loop(images, b),
                 "gancli vanilla --precision bf16": gancli_loop(images, b, precision="bf16"),
                 "gancli vanilla --ema 0.999": gancli_loop(images, b, ema=0.999),
                 "gancli fgan (defaults: R1 10)": gancli_loop(images, b, "fgan"),
                 "gancli fgan --r1 0 (plain)": gancli_loop(images, b, "fgan", r1=0.0),
                 "gancli fgan --spectral-norm --r1 0": gancli_loop(images, b, "fgan", spectral_norm=True, r1=0.0)}
        speeds = images_per_s(loops, args.steps, b, args.rounds)
    finally:
        shutil.rmtree(root)
    plain = speeds["plain DataLoader loop"]
    gflops = gemm_gflops()
    reached = speeds["gancli vanilla"] * FLOP_PER_IMAGE_STEP / 1e9
    print(f"threads {torch.get_num_threads()}, batch {b}, {args.steps} steps each in {args.rounds} turns")
    for name, speed in speeds.items():
        print(f"{name:36s}: {speed:6.0f} images/s, {speed / plain:.2f}x the plain loop")
    print(f"fp32 GEMM (1024^3): {gflops:.1f} GFLOP/s; gancli vanilla reaches {reached:.1f} GFLOP/s = {reached / gflops:.0%}")


if __name__ == "__main__":
    main()
