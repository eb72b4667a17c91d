"""The ``*_train`` task every learned codec shares: read a data folder, train through
:func:`collagekit.training.train`, export the weights with how they were made, report.

A modality's training task subclasses :class:`CodecTrainTask` (and its Config from
:class:`CodecTrainConfig`, overriding defaults and adding its own knobs) and supplies only what differs:
the default data folder and :meth:`CodecTrainTask.build` (the model, its rate-distortion objective and
the batch stream).
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from collagekit.errors import CollagekitError
from collagekit.fileio import outputs_together
from collagekit.metrics import write_metrics
from collagekit.pretrained import ModelStore
from collagekit.tasks import CodecTrainConfig, Task
from collagekit.training import save_weights, train

__all__ = ["CodecTrainConfig", "CodecTrainTask", "TrainingSetup"]


@dataclass
class TrainingSetup:
    """What a codec's :meth:`CodecTrainTask.build` returns.

    ``model`` is what gets exported; ``objective(batch) -> (loss, metrics)`` owns it;
    ``make_batch(step, rank, world_size)`` is the deterministic stream the training loop expects;
    ``about`` goes into the reported metrics and into the exported file's ``made_by``; ``config`` is the
    architecture recorded with the weights when the data decide it (default: the recipe's ``model:``).
    """

    model: nn.Module
    objective: nn.Module
    make_batch: Callable[[int, int, int], Any]
    about: dict[str, Any] = field(default_factory=dict)
    config: BaseModel | None = None


class CodecTrainTask(Task):
    """Train, refuse a non-finite result, and (on rank 0 only) export the weights and the training log."""

    store: ClassVar[ModelStore]  # the codec's models: the exported file gets its ``format``; ``init`` is looked up there
    data_folder: ClassVar[str]  # the data used when the recipe names none: this folder under $COLLAGEKIT_DATA
    config: CodecTrainConfig

    @abstractmethod
    def build(self, folder: Path) -> TrainingSetup:
        """The model, objective and batch stream for this config and data folder."""

    def run(self) -> dict[str, Any]:
        from collagekit.bench import data_folder

        cfg = self.config
        # out_dir is the run's working folder (checkpoints, log: a rerun resumes there); the export is
        # the user's file.
        export, log = cfg.export_path, Path(cfg.out_dir) / "train_metrics.json"
        self.ctx.check_outputs([cfg.init], [export])
        folder = data_folder(cfg.data, self.data_folder, f"task {cfg.task}", "data=DIR")
        torch.manual_seed(cfg.training.seed)
        setup = self.build(folder)
        architecture = setup.config or cfg.model
        started_from = self._start_from(setup.model, architecture) if cfg.init else None
        result = train(setup.objective, setup.make_batch, cfg.training, out_dir=cfg.out_dir, device=self.ctx.device, description=f"training {cfg.model_name}")
        last = result.history[-1] if result.history else {}
        metrics = {
            "name": cfg.model_name,
            "steps": result.steps,
            "resumed_from": result.resumed_from,
            "train_seconds": round(result.seconds, 1),
            **{k: len(v) if isinstance(v, (list, tuple)) else v for k, v in setup.about.items()},
            **{f"final_{k}": round(v, 4) for k, v in last.items() if k != "step"},
            **self.ctx.conditions(),
        }
        if not math.isfinite(metrics.get("final_loss", 0.0)):
            raise CollagekitError("training ended with a non-finite loss")
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one process writes
            made_by = {
                "recipe": cfg.task,
                "steps": result.steps,
                **setup.about,
                "batch_size": cfg.training.batch_size,
                **({"init": started_from} if started_from else {}),
                "train_seconds": round(result.seconds, 1),
                "device": str(self.ctx.device),
                "date": time.strftime("%Y-%m-%d"),
            }
            metadata = {
                "format": self.store.format,
                "name": cfg.model_name,
                "version": cfg.model_version,
                "config": architecture.model_dump_json(),
                "lmbda": repr(cfg.lmbda),
                "made_by": json.dumps(made_by),
            }
            with outputs_together() as stage:
                save_weights(setup.model, stage(export), metadata)
                write_metrics(stage(log), {**metrics, "history": result.history})
            metrics["export"] = str(export)
        return metrics

    def _start_from(self, model: nn.Module, architecture: BaseModel) -> str:
        """Copy ``init``'s weights into ``model`` (refused unless the architectures agree); what was used."""
        cfg = self.config
        loaded = self.store.load(str(cfg.init))
        if loaded.config != architecture:
            raise CollagekitError(f"init={cfg.init!r} has another architecture than this recipe's model: (copy its model: section from the file's config)")
        model.load_state_dict(loaded.model.state_dict())
        return f"{loaded.name} {loaded.version} ({loaded.sha256})"
