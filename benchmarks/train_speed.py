"""Images/s of gancli's training loop against a plain PyTorch loop of the same MLP GAN.

The plain loop is written the usual way: torchvision MNIST + DataLoader + ToTensor/Normalize,
a sigmoid discriminator with nn.BCELoss, separate D passes on real and fake. Both run in this
process on the same real MNIST at batch 64, in turns (--rounds), so that the machine's drift
over the minutes of the benchmark falls on every loop alike. gancli's loop reads its per-step
scalars at the training loop's pace (training.READ_EVERY: every step on a CPU, every 32nd on a GPU).

On a CPU it also reports the fraction of the machine's measured fp32 GEMM throughput that gancli
reaches (~35 MFLOP per image per training step); on a GPU (--device cuda), the fraction of the
wall time the GPU spends in kernels during gancli's steps (torch.profiler): near 1 when the host
keeps the GPU fed, low when it waits on the host.

    GANCLI_DATA=../shared/data/mnist python benchmarks/train_speed.py [--steps 400] [--rounds 6] [--device cuda]
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
from gancli.state import new_state
from gancli.training import READ_EVERY, ScalarReader, train_step

FLOP_PER_IMAGE_STEP = 35e6


def gemm_gflops(size: int = 1024, repeats: int = 30) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gancli_loop(images: torch.Tensor, batch: int, objective: str = "vanilla", device: str = "cpu", epoch: int = 0,
                **options) -> Callable[[int], None]:
    """steps -> trains that many more steps of gancli's loop (the data on the device as uint8, as training keeps it),
    as in 0-based `epoch` (for options that change with it)."""
    # without the moving average (a new run's default) unless a row asks for it: each row times one thing
    state = new_state(make_config(objective, batch_size=batch, **{"ema": 0.0, **options}), device)
    state.epoch = epoch
    images = images.to(state.device)
    order, per_epoch, done = torch.randperm(images.shape[0], device=state.device), images.shape[0] // batch, [0]
    reader = ScalarReader(state.world, READ_EVERY.get(state.device.type, 1))

    def run(steps: int) -> None:
        for k in range(steps):
            i = done[0] % per_epoch
            reader.add(state.step, train_step(state, to_unit_range(images[order[i * batch:(i + 1) * batch]]), 0.0))
            if reader.due(k == steps - 1):
                reader.read()
            done[0] += 1
        synchronize(state.device)

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


def plain_loop(root: Path, batch: int, device: str = "cpu") -> Callable[[int], None]:
    """steps -> trains that many more steps of the usual torchvision + DataLoader loop (batches moved to the device)."""
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
    G, D = G.to(device), D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    batches = (x for _ in itertools.count() for x, _ in loader)
    ones, zeros = torch.ones(batch, 1, device=device), torch.zeros(batch, 1, device=device)

    def run(steps: int) -> None:
        for _ in range(steps):
            x = next(batches).view(-1, 784).to(device)
            fake = G(torch.randn(batch, 100, device=device))
            opt_d.zero_grad()
            loss_d = bce(D(x), ones) + bce(D(fake.detach()), zeros)
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = bce(D(fake), ones)
            loss_g.backward()
            opt_g.step()
        synchronize(torch.device(device))

    return run


def kernel_fraction(run: Callable[[int], None], steps: int) -> float:
    """The share of `steps` steps' wall time the GPU spends in kernels (torch.profiler's device time)."""
    from torch.profiler import ProfilerActivity, profile

    run(20)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        run(steps)
        wall = time.perf_counter() - start
    busy_us = sum(getattr(e, "self_device_time_total", 0) for e in prof.key_averages()
                  if str(getattr(e, "device_type", "")).endswith("CUDA"))
    return busy_us / 1e6 / wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6, help="turns the steps are split into, taken loop by loop")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    images = load_images("mnist")
    root = torchvision_root()
    try:
        b, dev = args.batch_size, args.device
        loops = {"plain DataLoader loop": plain_loop(root, b, dev),
                 "gancli vanilla": gancli_loop(images, b, device=dev),
                 "gancli vanilla --precision bf16": gancli_loop(images, b, device=dev, precision="bf16"),
                 "gancli vanilla --ema 0.999": gancli_loop(images, b, device=dev, ema=0.999),
                 "gancli fgan (defaults: R1 10)": gancli_loop(images, b, "fgan", dev),
                 "gancli fgan --r1 0 (plain)": gancli_loop(images, b, "fgan", dev, r1=0.0),
                 "gancli fgan --spectral-norm --r1 0": gancli_loop(images, b, "fgan", dev, spectral_norm=True, r1=0.0)}
        speeds = images_per_s(loops, args.steps, b, args.rounds)
    finally:
        shutil.rmtree(root)
    plain = speeds["plain DataLoader loop"]
    where = torch.cuda.get_device_name() if dev == "cuda" else f"threads {torch.get_num_threads()}"
    print(f"{where}, batch {b}, {args.steps} steps each in {args.rounds} turns")
    for name, speed in speeds.items():
        print(f"{name:36s}: {speed:6.0f} images/s, {speed / plain:.2f}x the plain loop")
    if dev == "cuda":
        busy = kernel_fraction(loops["gancli vanilla"], min(args.steps, 200))
        print(f"gancli vanilla: the GPU is in kernels {busy:.0%} of the wall time (torch.profiler)")
    else:
        gflops = gemm_gflops()
        reached = speeds["gancli vanilla"] * FLOP_PER_IMAGE_STEP / 1e9
        print(f"fp32 GEMM (1024^3): {gflops:.1f} GFLOP/s; gancli vanilla reaches {reached:.1f} GFLOP/s = {reached / gflops:.0%}")


if __name__ == "__main__":
    main()
