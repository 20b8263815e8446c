"""Multi-process data-parallel training (``torchrun``) with PyTorch DistributedDataParallel.

``torchrun --nproc_per_node=N -m spike.cli.main train CONFIG`` (or ``spike train`` launched by any
launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``)
makes :func:`spike.train.recipe.train_from_config` call :func:`setup`: one process per device, NCCL
on CUDA and gloo on CPU, every process seeded alike, the model wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel` (which broadcasts rank 0's parameters), a
``DistributedSampler`` over the training set, and only rank 0 writing checkpoints, logs and plots.

``[data] batch_size`` stays the *global* batch: each of the N processes loads ``batch_size / N``
samples, so a config trains the same way on 1 or N processes (same effective learning rate).

Gradients: BPTT does one forward through the DDP wrapper and one backward, so DDP's reducer averages
the gradients. SLTT and the forward-learning strategies run their own layer loop (many small
backward passes per batch, or layer-local graphs) on :func:`unwrap` ``(model)``; they call
:func:`sync_gradients` once per batch, which performs the same average with one all-reduce.
Both give the gradient of the mean loss over the global batch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "env_world", "setup", "teardown", "wrap", "unwrap", "rank_world", "is_main",
           "sync_gradients", "local_batch_size"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world`` processes, ``local_rank`` on its node, its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str
    owned: bool = True  # this call created the process group (so teardown destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by ``torchrun``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"environment variable WORLD_SIZE must be an integer, got "
                         f"{os.environ['WORLD_SIZE']!r}") from None


def setup(device: torch.device, timeout_s: float = 1800.0) -> DistInfo | None:
    """Join the process group described by ``torchrun``'s environment variables.

    Args:
        device: the device the config asked for; on CUDA each process takes ``cuda:LOCAL_RANK``.
        timeout_s: collective timeout.

    Returns:
        ``None`` when ``WORLD_SIZE`` is unset or 1 (single process, nothing to do), else a :class:`DistInfo`.

    Raises:
        ValueError: if some of the variables are missing or malformed.
    """
    if env_world() <= 1:
        return None
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {missing} are not set; launch with "
                         f"torchrun --nproc_per_node=N (or set all of {list(_ENV)})")
    rank, world, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices; "
                             f"use --nproc_per_node <= {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank, world, local_rank, device, backend, owned)


def teardown(info: DistInfo | None = None, sync: bool = True) -> None:
    """Leave the process group; with ``info``, only if :func:`setup` created it (a caller's own group stays).

    ``sync``: wait at a barrier until every rank is leaving, so that no rank closes its connections
    while another is still finishing (a gloo peer that vanishes can make the other's transport thread
    throw and abort that process). Pass ``False`` when leaving on an error: the other ranks may never
    reach the barrier.
    """
    if info is not None and not info.owned:
        return
    if dist.is_available() and dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the only process that writes files."""
    return rank_world()[0] == 0


def local_batch_size(global_batch: int, world: int) -> int:
    """Per-process batch of a global batch split over ``world`` processes.

    Raises:
        ValueError: if ``global_batch`` is not a multiple of ``world`` (naming ``[data] batch_size``).
    """
    if global_batch % world:
        raise ValueError(f"[data] batch_size = {global_batch} is the global batch and must be a multiple of "
                         f"the number of processes ({world})")
    return global_batch // world


def wrap(model: nn.Module, info: DistInfo | None) -> nn.Module:
    """``DistributedDataParallel(model)`` in a process group, ``model`` itself otherwise.

    ``broadcast_buffers=False``: no collective runs inside ``forward``, so rank 0 alone may call the
    model (plots) and evaluation never deadlocks; BatchNorm running statistics stay per process.
    """
    if info is None:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=ids[0] if ids else None, broadcast_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP (or any ``.module``-style) wrapper."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return model.module if isinstance(model, DDP) else model


def sync_gradients(model: nn.Module, params: Iterable[nn.Parameter] | None = None) -> None:
    """Average ``.grad`` over the process group with one all-reduce (what DDP's reducer does).

    For strategies that do not run one forward/backward pair through the DDP wrapper. A no-op in a
    single process. Parameters whose ``.grad`` is ``None`` are skipped (the same on every rank,
    since every rank runs the same graph).
    """
    _, world = rank_world()
    if world == 1:
        return
    plist = [p for p in (params if params is not None else unwrap(model).parameters())
             if p.requires_grad and p.grad is not None]
    if not plist:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in plist])  # [sum of numel]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    i = 0
    for p in plist:
        n = p.grad.numel()
        p.grad.copy_(flat[i:i + n].view_as(p.grad))
        i += n
