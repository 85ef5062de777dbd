"""Images/s of one run trained by 1 process against the same run trained by N processes under
torchrun (gloo on CPU, NCCL on CUDA), from the runs' own log lines (training time, no start-up).

Each configuration is a real `gan train` of the course MLP at batch 64 on the first --images
MNIST images, taken in turns (--rounds) so that the machine's drift falls on each alike; the
first epoch of every run is left out as warm-up. On a CPU, N processes share the cores: torchrun
gives each one thread, so the fair single-process baselines are 1 thread and all threads.

    GANCLI_DATA=../shared/data/mnist python benchmarks/data_parallel.py [--nproc 2] [--images 12800]
        [--epochs 3] [--rounds 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def trained_speed(launcher: list[str], threads: int, args: argparse.Namespace, runs: Path, name: str) -> float:
    """Mean images/s of a run's epochs after the first."""
    command = [*launcher, "-m", "gancli", "train", "vanilla", "--data", f"mnist[:{args.images}]", "--epochs",
               str(args.epochs), "--eval-every", "0", "--device", args.device, "--runs", str(runs), "--name", name]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, env=env, check=True, capture_output=True)
    records = [json.loads(line) for line in (runs / name / "log.jsonl").read_text().splitlines()]
    return statistics.mean(r["images_per_s"] for r in records[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    one = [sys.executable]
    spread = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc)]
    configs = {f"1 process, {cores} threads": (one, cores), "1 process, 1 thread": (one, 1),
               f"torchrun {args.nproc} processes, 1 thread each": (spread, 1)}
    speeds: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory(prefix="gancli-ddp-") as tmp:
        for round_ in range(args.rounds):
            for i, (name, (launcher, threads)) in enumerate(configs.items()):
                speeds[name].append(trained_speed(launcher, threads, args, Path(tmp), f"r{round_}-{i}"))
    base = statistics.mean(speeds[f"1 process, {cores} threads"])
    print(f"vanilla MLP, batch 64, {args.images} MNIST images, epochs 2..{args.epochs}, {args.rounds} rounds, "
          f"{args.device}, {cores} cores")
    for name, values in speeds.items():
        mean = statistics.mean(values)
        print(f"{name:36s}: {mean:6.0f} images/s, {mean / base:.2f}x one process on every core")


if __name__ == "__main__":
    main()
