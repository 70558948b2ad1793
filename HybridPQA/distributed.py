"""Data-parallel training under `torchrun` with torch.distributed and DDP.

    torchrun --nproc_per_node=2 -m HybridPQA.cli train ... DISTRIBUTED True

Every rank builds the same global batch (the TrainingSet's order is a pure function of the seed),
encodes its contiguous share of it (`Distributed.shard`: the distributed sampler), and gathers
the other ranks' representations with gradients (`gather`). Each rank then computes the loss of
the whole batch, so every question sees every rank's contexts as negatives and the FLOPS
regulariser is taken over the global batch: the loss, and after DDP's gradient averaging the
gradients, are those of one process training on the combined batch, for any number of ranks.

Rank 0 alone writes files, logs and evaluates; the other ranks wait at a barrier.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from HybridPQA.errors import InputError

# rank 0 evaluates and checkpoints while the others wait: give it hours, not the default 30 minutes
TIMEOUT = datetime.timedelta(hours=6)


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n items (n divisible by the world size)."""
        if n % self.world_size:
            raise InputError(f"config: RETRIEVER.SOLVER.TRAIN_BATCH_SIZE = {n} must be divisible by the "
                             f"{self.world_size} processes; change it or --nproc_per_node")
        size = n // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's tensor along dim 0, keeping the autograd graph. Token vectors
        (B, L, D) of different lengths are zero-padded to the longest (padding never matches)."""
        if tensor.dim() == 3:
            length = torch.tensor([tensor.shape[1]])
            dist.all_reduce(length, op=dist.ReduceOp.MAX)
            tensor = torch.nn.functional.pad(tensor, (0, 0, 0, int(length) - tensor.shape[1]))
        return _Gather.apply(tensor, self.rank, self.world_size)

    def gather_objects(self, obj) -> list:
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()


class _Gather(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient of the gathered tensor (all_reduce)
    and keeps this rank's slice. Uses only collectives the gloo backend has."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.size = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size], None, None


def build_distributed(cfg) -> Distributed | None:
    """Join the process group torchrun set up (DISTRIBUTED True), else None. gloo on CPU, nccl on CUDA."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not cfg.DISTRIBUTED:
        if launched:
            raise InputError("launched by torchrun with several processes but DISTRIBUTED is False; "
                             "add DISTRIBUTED True")
        return None
    if "RANK" not in os.environ:
        raise InputError("config: DISTRIBUTED True needs torchrun: torchrun --nproc_per_node=N -m HybridPQA.cli "
                         "train ...")
    return join(cfg.DEVICE != "cpu" and torch.cuda.is_available())


def join(cuda: bool) -> Distributed | None:
    """The process group torchrun set up (gloo on CPU, nccl on CUDA), or None outside torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return None
    info = Distributed(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return info


def wrap(model: torch.nn.Module, info: Distributed | None, device: torch.device,
         unused: bool = False) -> torch.nn.Module:
    """DDP around the model; `unused`: some parameters get no gradient (the MLM head of a model
    without a sparse head), which DDP must be told."""
    if info is None:
        return model
    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)
