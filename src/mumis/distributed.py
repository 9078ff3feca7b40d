"""torchrun helpers: one process per device, gradients averaged by hand (no DDP wrapper).

    torchrun --standalone --nproc_per_node=2 -m mumis unlearn --checkpoint runs/original \\
        --forget class:3 --method mumis --out runs/mumis

Used by `mumis train` (`training.train_model`) and every loss-based unlearning method (the loop
of `methods._loop.LossMethod`, which declares `supports_distributed`): every rank holds the full
data and draws each global batch (and its random choices) from the same seed, then computes its
contiguous part of the batch (`shard_bounds`); the per-batch index split is the distributed
sampler, and it makes N processes equal one process on the same global batch.

`init_from_env()` reads the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and starts a process group: gloo on CPU, nccl when CUDA is available (each process
then uses cuda:LOCAL_RANK). Without torchrun (WORLD_SIZE absent or 1) everything here is a
no-op, so single-process code calls these helpers unconditionally.

Why no `DistributedDataParallel`: MU-Mis differentiates input gradients (double backward) and
takes its weight gradient with `torch.autograd.grad`, which bypasses DDP's backward hooks; the
methods also need every rank to see the same reduced batch loss and stopping statistics. One
explicit all-reduce of the batch loss and one of the flattened gradients (`all_reduce_grads`)
per step keep the update identical on every rank (training uses the same helper; it gives up
DDP's overlap of communication with backward, which matters little for the small models here).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .exceptions import ConfigError

__all__ = ["init_from_env", "is_distributed", "is_main", "rank", "world", "barrier",
           "all_reduce_sum", "all_reduce_max", "broadcast_module", "shard_bounds", "shutdown",
           "all_reduce_grads"]


def _env_world() -> int:
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {raw!r}; start the run with torchrun") from None


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun describes in the environment, once.

    Args:
        backend: "gloo" or "nccl"; None picks nccl when CUDA is available, gloo otherwise.
    Returns:
        True when running with more than one process (a group is, or already was, started).
    Raises:
        ConfigError: WORLD_SIZE > 1 without the rest of torchrun's environment.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if _env_world() <= 1:
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set; start the run with torchrun")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" now means this rank's GPU
    dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    """True inside a started process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _device_ok(t: torch.Tensor) -> torch.Tensor:
    # gloo reduces CPU tensors only; nccl CUDA tensors only.
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        return t.cuda()
    if dist.get_backend() == "gloo" and t.device.type != "cpu":
        return t.cpu()
    return t


def _all_reduce(t: torch.Tensor, op: dist.ReduceOp.RedOpType) -> torch.Tensor:
    if not is_distributed():
        return t
    buf = _device_ok(t.detach().clone())
    dist.all_reduce(buf, op=op)
    return buf.to(t.device)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all ranks (the same tensor on every rank); `t` itself when single."""
    return _all_reduce(t, dist.ReduceOp.SUM)


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Element-wise max of `t` over all ranks; `t` itself when single."""
    return _all_reduce(t, dist.ReduceOp.MAX)


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers to every rank (in place)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            buf = _device_ok(t.detach().clone())
            dist.broadcast(buf, src=src)
            t.copy_(buf.to(t.device))


def shard_bounds(n: int, world_size: int | None = None, rank_: int | None = None) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous part of n items (sizes differ by at most 1; may be empty)."""
    w = world() if world_size is None else world_size
    r = rank() if rank_ is None else rank_
    return n * r // w, n * (r + 1) // w


def shutdown(*, wait: bool = True) -> None:
    """Leave the process group; `wait`: after a barrier, so no rank exits while others still
    reduce (pass False after an error: the others may never reach the barrier)."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's `.grad` over all ranks, in place, with one flat all-reduce.

    A parameter keeps `grad=None` only if it has none on every rank (so optimizers skip it, as
    in one process); a rank without a gradient for a parameter contributes zeros.
    """
    if not is_distributed() or not params:
        return
    ref = params[0]
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1) for p in params]
    has = torch.tensor([float(p.grad is not None) for p in params], dtype=ref.dtype, device=ref.device)
    flat = all_reduce_sum(torch.cat([*parts, has]))  # (P + n_params,)
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone() if flat[-len(params) + i] > 0 else None
        offset += n
