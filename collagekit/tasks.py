"""Tasks: what a recipe's ``task:`` key runs. Plugins register :class:`Task` subclasses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import Field

from collagekit.config import StrictModel
from collagekit.registry import Registry


class TaskConfig(StrictModel):
    """Base of every task's Config. Subclasses declare ``task: Literal["their-name"] = "their-name"``."""

    task: str
    seed: int = Field(0, description="random seed for everything the task draws")
    device: str = Field("auto", description="auto | cpu | cuda[:N]")


@dataclass
class RunContext:
    registry: Registry
    device: torch.device

    def versions(self) -> dict[str, str]:
        """Versions of collagekit and every loaded plugin: written into every file a task saves."""
        from collagekit.registry import plugin_versions

        return plugin_versions(self.registry)


class Task(ABC):
    Config: ClassVar[type[TaskConfig]]

    def __init__(self, config: TaskConfig, ctx: RunContext) -> None:
        self.config = config
        self.ctx = ctx

    @abstractmethod
    def run(self) -> dict[str, Any]:
        """Do the work; return the metrics (the CLI prints them)."""


def run_task(config: TaskConfig, registry: Registry, device: str | None = None) -> dict[str, Any]:
    """Seed, pick the device (``device`` overrides the config's), and run the config's task."""
    from collagekit.device import resolve_device

    torch.manual_seed(config.seed)
    ctx = RunContext(registry=registry, device=resolve_device(device or config.device))
    return registry.get("task", config.task)(config, ctx).run()
