"""Several processes under torchrun: devices, shares of a global batch, means and broadcasts."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from liser.devices import distributed_device


def resolve_device(name: str) -> torch.device:
    """The run's device ("cuda" under torchrun: this process's GPU); see ``devices``."""
    return distributed_device(name)


def init_distributed(device_name: str) -> tuple[int, int, bool]:
    """(rank, world size, whether we started the process group) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return (
            (dist.get_rank(), dist.get_world_size(), False)
            if dist.is_initialized()
            else (0, 1, False)
        )
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def share(n: int, rank: int, world: int) -> np.ndarray:
    """This process's rows of a global batch of n."""
    return np.array_split(np.arange(n), world)[rank]


def mean_over_processes(values: list[float], device, world: int) -> list[float]:
    """The mean of each value over all processes (for logging losses)."""
    if world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / world).tolist()


def broadcast_floats(values: list[float], device, world: int) -> list[float]:
    """Process 0's values, on every process."""
    if world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, 0)
    return tensor.tolist()
