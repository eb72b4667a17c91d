"""Tasks: what a recipe's ``task:`` key runs. Plugins register :class:`Task` subclasses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field

from collagekit.config import MAX_SEED, StrictModel
from collagekit.errors import CollagekitError
from collagekit.registry import Registry


class TaskConfig(StrictModel):
    """Base of every task's Config. Subclasses declare ``task: Literal["their-name"] = "their-name"``."""

    task: str
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed for everything the task draws")
    device: str = Field("auto", description="auto | cpu | cuda[:N]")


class FileTaskConfig(TaskConfig):
    """A task that codes one input file: it saves the code (``.clg``) and writes the decoded signal.

    Subclasses override the defaults and descriptions (``output`` has none here) and add their knobs.
    """

    input: str | None = Field(None, description="file to code (default: the sample shipped with the plugin)")
    output: str = Field(description="the decoded file")
    code: str | None = Field(None, description="where to save the code (default: output with .clg)")
    metrics: str | None = Field(None, description="optional JSON file for the metrics")

    def paths(self, suffixes: Collection[str], sample: Callable[[], Path]) -> tuple[Path, Path, Path]:
        """-> (input, or the shipped sample; output, checked against ``suffixes``; code file).

        Errors come before any work, so a wrong output suffix never leaves a code file behind."""
        from collagekit.container import SUFFIX
        from collagekit.fileio import check_input

        source = check_input(self.input) if self.input else sample()
        output = Path(self.output)
        if output.suffix.lower() not in suffixes:
            raise CollagekitError(f"output {str(output)!r} must end in one of {', '.join(suffixes)}")
        return source, output, Path(self.code) if self.code else output.with_suffix(SUFFIX)


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
