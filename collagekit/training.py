"""The one training loop every learned component uses (image encoders, audio encoders, VAEs).

What it asks of a caller:

* ``objective``: an ``nn.Module`` whose ``forward(batch)`` returns ``(loss, metrics)`` — the loss a
  scalar tensor, ``metrics`` a dict of floats or scalar tensors to show and log. The loss is computed
  inside ``forward`` so that DistributedDataParallel sees the call and synchronises gradients.
* ``make_batch(step, rank, world_size)``: the batch for this step on this process, deterministic in
  its arguments. Resuming then replays the same data stream, and every rank sees different data.

What it does: AdamW with linear warm-up and a constant or cosine schedule, gradient clipping, a
rich progress bar with the running metrics, safetensors checkpoints every ``checkpoint_every`` steps
(weights, optimiser state, and a JSON record of the step and history), resumption from them, and —
under ``torchrun`` (``WORLD_SIZE`` > 1) — torch.distributed with DDP (NCCL on CUDA, else gloo), where
only rank 0 writes. The global RNG is reseeded from (seed, step, rank) every step, so a resumed run
draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from collagekit.config import MAX_SEED, StrictModel
from collagekit.errors import CollagekitError
from collagekit.fileio import atomic_output
from collagekit.progress import progress_bar

WEIGHTS_FILE = "checkpoint.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RECORD_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = 1


class TrainingConfig(StrictModel):
    """How to optimise an objective; embed it in a task's config as ``training``."""

    steps: int = Field(1000, ge=1, description="optimiser steps in all (a resumed run continues to this count)")
    batch_size: int = Field(16, ge=1, description="examples per step on each process")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to lr")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the gradient's global norm; null = off")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the data stream and initialisation")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (and one at the end)")
    log_every: int = Field(25, ge=1, description="steps averaged into one history entry")
    resume: bool = Field(True, description="continue from the checkpoint in the output folder, if there is one")


@dataclass
class TrainResult:
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0


def lr_factor(step: int, config: TrainingConfig) -> float:
    """The learning rate at ``step`` as a fraction of ``config.lr``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = max(config.steps - config.warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * (step - config.warmup_steps) / span))


# ---------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextmanager
def distributed(device: torch.device) -> Iterator[Distributed]:
    """Join the process group ``torchrun`` describes in the environment (or stay single-process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield Distributed(device=device)
        return
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)
    finally:
        if owns_group:
            dist.destroy_process_group()


# ---------------------------------------------------------------- weights and checkpoints
def _plain_tensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # safetensors refuses shared storage (tied weights) and non-contiguous views: store copies.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a module's state dict as safetensors (atomically), with string metadata."""
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file(_plain_tensors(module.state_dict()), str(tmp), metadata=dict(metadata or {}))


def load_weights(module: nn.Module, path: str | Path) -> dict[str, str]:
    """Load safetensors weights into ``module`` (shapes and names must match); returns the metadata."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CollagekitError(f"no weights file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CollagekitError(f"{str(path)!r} is not a readable safetensors file ({exc})") from None
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CollagekitError(f"the weights in {str(path)!r} do not fit this model: {first}") from None
    return metadata


def _save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": value if isinstance(value, Tensor) else torch.tensor(value)
        for index, slots in state["state"].items()
        for key, value in slots.items()
    }
    groups = json.dumps(state["param_groups"])
    with atomic_output(path) as tmp:
        save_file(_plain_tensors(tensors), str(tmp), metadata={"param_groups": groups})


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
        slots: dict[int, dict[str, Tensor]] = {}
        for name in f.keys():
            index, key = name.split(".", 1)
            slots.setdefault(int(index), {})[key] = f.get_tensor(name)
    optimizer.load_state_dict({"state": slots, "param_groups": groups})


def save_checkpoint(out_dir: Path, objective: nn.Module, optimizer: torch.optim.Optimizer, record: dict[str, Any]) -> None:
    """Weights, optimiser state, then the JSON record: the record is written last, so a checkpoint
    whose record exists is complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(objective, out_dir / WEIGHTS_FILE)
    _save_optimizer(optimizer, out_dir / OPTIMIZER_FILE)
    with atomic_output(out_dir / RECORD_FILE) as tmp:
        tmp.write_text(json.dumps({"format": CHECKPOINT_FORMAT, **record}, indent=1))


def load_checkpoint(out_dir: Path, objective: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore a checkpoint written by :func:`save_checkpoint`; None when ``out_dir`` holds none."""
    record_path = out_dir / RECORD_FILE
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        step = int(record["step"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CollagekitError(f"the checkpoint record {str(record_path)!r} is damaged ({exc})") from None
    if record.get("format") != CHECKPOINT_FORMAT:
        raise CollagekitError(f"the checkpoint in {str(out_dir)!r} has format {record.get('format')}, not {CHECKPOINT_FORMAT}")
    load_weights(objective, out_dir / WEIGHTS_FILE)
    _load_optimizer(optimizer, out_dir / OPTIMIZER_FILE)
    record["step"] = step
    return record


# ---------------------------------------------------------------- the loop
def _as_float(value: float | Tensor) -> float:
    return float(value.detach()) if isinstance(value, Tensor) else float(value)


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 4096 + rank


def train(
    objective: nn.Module,
    make_batch: Callable[[int, int, int], Any],
    config: TrainingConfig,
    *,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    description: str = "training",
) -> TrainResult:
    """Optimise ``objective`` for ``config.steps`` steps (see the module docstring for the contract).

    The objective is moved to ``device`` (under torchrun with CUDA: this process's GPU). Raises a
    CollagekitError if the loss becomes NaN or infinite, naming the step.
    """
    out = Path(out_dir) if out_dir is not None else None
    started = time.perf_counter()
    with distributed(torch.device(device)) as dist:
        objective.to(dist.device)
        optimizer = torch.optim.AdamW(objective.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        history: list[dict[str, float]] = []
        start = 0
        if out is not None and config.resume:
            record = load_checkpoint(out, objective, optimizer)
            if record is not None:
                start, history = record["step"], list(record.get("history", []))
        model: nn.Module = objective
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(objective, device_ids=[dist.device] if dist.device.type == "cuda" else None)

        sums: dict[str, float] = {}
        count = 0
        with progress_bar(description, total=config.steps, enabled=dist.is_main) as bar:
            bar.advance(start)
            for step in range(start, config.steps):
                torch.manual_seed(_step_seed(config.seed, step, dist.rank))
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * lr_factor(step, config)
                loss, metrics = model(make_batch(step, dist.rank, dist.world_size))
                if not torch.isfinite(loss):
                    raise CollagekitError(f"training diverged at step {step}: the loss is {float(loss.detach())}; try a lower lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(objective.parameters(), config.grad_clip)
                optimizer.step()

                for key, value in {"loss": loss, **metrics}.items():
                    sums[key] = sums.get(key, 0.0) + _as_float(value)
                count += 1
                done = step + 1
                if done % config.log_every == 0 or done == config.steps:
                    entry = {"step": float(done), **{k: v / count for k, v in sums.items()}}
                    history.append(entry)
                    sums, count = {}, 0
                    bar.info("  ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "step"))
                if out is not None and dist.is_main and (done % config.checkpoint_every == 0 or done == config.steps):
                    save_checkpoint(out, objective, optimizer, {"step": done, "history": history, "config": config.model_dump()})
                bar.advance()
    return TrainResult(steps=config.steps, history=history, seconds=time.perf_counter() - started, resumed_from=start)
