"""Data-parallel training under torchrun: the ranks a process trains with, and the few collectives
the training loop needs.

torchrun starts one process per rank and sets RANK, LOCAL_RANK and WORLD_SIZE; `joined` reads
them and opens the process group (NCCL on CUDA, gloo on CPU). Outside torchrun the world is one
process, SINGLE, whose collectives are no-ops, so that the single-process loop runs as before.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from gancli.errors import GancliError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs, grids and evaluations, and prints."""
        return self.rank == 0

    def part(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch: rank r of n takes rows [r b/n, (r+1) b/n)."""
        rows = batch.shape[0] // self.size
        return batch[self.rank * rows:(self.rank + 1) * rows]

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of `values` over the ranks (in place); a NaN on any rank is a NaN on all."""
        if self.size > 1:
            dist.all_reduce(values)
            values /= self.size
        return values

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def share(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, make: Callable[[], T]) -> T:
        """make() run by rank 0 alone (a run folder to create), its result shared with every rank; its
        GancliError is raised on every rank."""
        if self.size == 1:
            return make()
        outcome = None
        if self.main:
            try:
                outcome = (make(), None)
            except GancliError as e:
                outcome = (None, e)
        value, error = self.share(outcome)
        if error is not None:
            raise error
        return value

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


SINGLE = World()


@contextmanager
def joined(device: str) -> Iterator[tuple[World, str]]:
    """This process's world and the device it trains on: under torchrun with more than one process,
    the process group (closed on exit) and, on CUDA, the GPU cuda:LOCAL_RANK; otherwise SINGLE and `device`."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        yield SINGLE, device
        return
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(world.local_rank)
        device = f"cuda:{world.local_rank}"
    opened = not dist.is_initialized()
    if opened:
        # Building the first optimizer imports torch._dynamo; imported while a process group exists,
        # it keeps the group alive past destroy_process_group (torch 2.14), and gloo's threads then
        # free tensors while Python shuts down: an abort after the run, now and then.
        importlib.import_module("torch._dynamo")
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield world, device
    finally:
        if opened:
            dist.destroy_process_group()


def average_gradients(module: torch.nn.Module, world: World) -> None:
    """Each gradient of `module` replaced by its mean over the ranks, all of them in one all-reduce;
    nothing in a one-process world.

    By hand rather than with DistributedDataParallel, whose wrapper holds the process group until
    it is freed itself, after `joined` has closed the group: gloo's threads must be gone, not
    merely idle, before Python shuts down (see `joined`)."""
    if world.size == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = world.mean(torch.cat([g.flatten() for g in grads]))
    for grad, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(mean.view_as(grad))
