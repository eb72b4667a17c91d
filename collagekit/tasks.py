"""Tasks: what a recipe's ``task:`` key runs. Plugins register :class:`Task` subclasses.

The task Configs here (and the plugins' task Configs) import no torch, so recipes validate without it;
torch is imported when a task runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, Field

from collagekit.config import MAX_SEED, CollageConfig, ComponentConfig, Slot, StrictModel, TrainingConfig, slot_default
from collagekit.errors import CollagekitError
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.registry import Registry

if TYPE_CHECKING:
    import torch

class TaskConfig(StrictModel):
    """Base of every task's Config. Subclasses declare ``task: Literal["their-name"] = "their-name"``."""

    task: str
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed for everything the task draws")
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads for torch (default: torch's choice; --threads overrides)")


class FileTaskConfig(TaskConfig):
    """A task that codes one input file: it saves the code (``.clg``) and writes the decoded signal.

    Subclasses override the defaults and descriptions (``output`` has none here) and add their knobs.
    """

    input: str | None = Field(None, description="file to code (default: the sample shipped with the plugin)")
    output: str = Field(description="the decoded file")
    code: str | None = Field(None, description="where to save the code (default: output with .clg)")
    metrics: str | None = Field(None, description="optional JSON file for the metrics")

    def paths(
        self, suffixes: Collection[str], sample: Callable[[], Path], ctx: RunContext, also: Iterable[str | None] = ()
    ) -> tuple[Path, Path, Path]:
        """-> (input, or the shipped sample; output; code file), checked as :meth:`outputs` says."""
        from collagekit.fileio import check_input

        source = check_input(self.input) if self.input else sample()
        return (source, *self.outputs(suffixes, ctx, [source], also))

    def outputs(
        self, suffixes: Collection[str], ctx: RunContext, inputs: Iterable[Path | None], also: Iterable[str | None] = ()
    ) -> tuple[Path, Path]:
        """-> (output, checked against ``suffixes``; code file). Every check comes before any work: a
        wrong suffix, an output that is an input, or an existing output without ``force`` never leaves
        a file behind. ``also``: the task's other outputs."""
        from collagekit.container import SUFFIX

        output = Path(self.output)
        if output.suffix.lower() not in suffixes:
            raise CollagekitError(f"output {str(output)!r} must end in one of {', '.join(suffixes)}")
        code = Path(self.code) if self.code else output.with_suffix(SUFFIX)
        ctx.check_outputs(inputs, [output, code, self.metrics, *also])
        return output, code


class GridFractalizeConfig(FileTaskConfig):
    input: str | None = Field(None, description="file to fractalize (default: the modality's shipped sample)")
    output: str = Field(description="where to write the decoded attractor")
    scale: int = Field(1, ge=1, le=64, description="decode the output at this integer scale")
    max_elements: int = Field(DEFAULT_MAX_ELEMENTS, ge=1, description="refuse inputs/outputs with more values")
    collage: CollageConfig
    encoder: Annotated[ComponentConfig, Slot("encoder")] = slot_default("fit")
    solver: Annotated[ComponentConfig, Slot("solver")] = slot_default("anderson", tol=1e-4, max_iter=100)


class CodecTrainConfig(TaskConfig):
    data: str | None = Field(None, description="folder of training data (default: the modality's folder under the data root, see COLLAGEKIT_DATA)")
    out_dir: str = Field(description="checkpoints and the training log")
    export: str | None = Field(None, description="the trained model, ready for --model (default: OUT_DIR/model.safetensors)")
    model_name: str = Field("custom", description="the model's name, recorded in every file it compresses")
    model_version: str = Field("1", description="the model's version, recorded likewise")
    lmbda: float = Field(gt=0, description="rate-distortion trade-off: higher = more bits, better quality")
    tol: float = Field(1e-3, gt=0, description="fixed-point tolerance while training")
    max_iter: int = Field(40, ge=1, le=1000, description="fixed-point iterations while training")
    init: str | None = Field(
        None,
        description="start from this trained model's weights (a shipped name or a .safetensors path, same architecture "
        "as model:) instead of a random start; a checkpoint in out_dir still takes precedence when resuming",
    )
    model: BaseModel = Field(description="the architecture (each codec's own Config), stored with the weights")
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @property
    def export_path(self) -> Path:
        return Path(self.export) if self.export else Path(self.out_dir) / "model.safetensors"


@dataclass
class RunContext:
    registry: Registry
    device: torch.device
    force: bool = False  # replace existing outputs

    def versions(self) -> dict[str, str]:
        """Versions of collagekit and every loaded plugin: written into every file a task saves."""
        from collagekit.registry import plugin_versions

        return plugin_versions(self.registry)

    def conditions(self) -> dict[str, Any]:
        """What timings depend on, for every metrics dict: the device and torch's CPU thread count."""
        import torch

        return {"device": str(self.device), "threads": torch.get_num_threads()}

    def check_outputs(self, inputs: Iterable[str | Path | None], outputs: Iterable[str | Path | None]) -> None:
        """Refuse outputs that are inputs, name one file twice, or exist (unless ``force``): before any work."""
        from collagekit.fileio import check_outputs

        check_outputs(inputs, outputs, self.force)


class Task(ABC):
    Config: ClassVar[type[TaskConfig]]

    def __init__(self, config: TaskConfig, ctx: RunContext) -> None:
        self.config = config
        self.ctx = ctx

    @abstractmethod
    def run(self) -> dict[str, Any]:
        """Do the work; return the metrics (the CLI prints them)."""


@dataclass
class Coded:
    """What a task made of one datum: the code file's bytes, the decoded datum in the form its
    modality's ``save`` takes, and the metrics (without file names)."""

    code: bytes
    decoded: Any
    metrics: dict[str, Any]


class FractalizeTask(Task):
    """A modality's fractalize task (its ``fractalize_task``): fit one datum's collage, keep the code,
    decode it at the config's ``scale``.

    Subclasses implement :meth:`fractalize` on data in memory; :meth:`run` (recipes, the CLI) adds
    the files: input (or the shipped sample), then output, code and metrics, written together at the
    end so that a failure leaves none of them. :func:`collagekit.fractalize` calls the same methods.
    """

    modality: ClassVar[str]
    config: Any  # a FileTaskConfig with ``scale`` and ``max_elements``

    @abstractmethod
    def sample_path(self) -> Path:
        """The sample used when the recipe names no input."""

    @abstractmethod
    def fractalize(self, x: Any, attrs: dict[str, Any]) -> Coded:
        """x as the modality's ``load`` returns it, and its attributes (audio: sample_rate) -> the code."""

    def output_suffixes(self) -> Collection[str]:
        return self.ctx.registry.get("modality", self.modality).suffixes

    def other_outputs(self) -> list[str | None]:
        """Files besides output, code and metrics that :meth:`write_others` writes."""
        return []

    def write_others(self, stage: Callable[[str | Path], Path], coded: Coded) -> None:
        """Write :meth:`other_outputs` to ``stage(path)``."""

    def run(self) -> dict[str, Any]:
        cfg = self.config
        modality = self.ctx.registry.get("modality", self.modality)
        source, output, code = cfg.paths(self.output_suffixes(), self.sample_path, self.ctx, self.other_outputs())
        attrs = modality.read_attributes(source)
        coded = self.fractalize(modality.load(source, cfg.max_elements), attrs)
        metrics = {"input": str(source), "output": str(output), "code": str(code), **coded.metrics}
        self.write(coded, output, code, attrs, metrics)
        return metrics

    def write(self, coded: Coded, output: Path, code: Path | None, attrs: dict[str, Any], metrics: dict[str, Any]) -> None:
        """The decoded datum, its code, the metrics (when the config names a file) and the other
        outputs, all or none."""
        from collagekit.fileio import outputs_together
        from collagekit.metrics import write_metrics
        from collagekit.modality import save_signal

        modality = self.ctx.registry.get("modality", self.modality)
        with outputs_together() as stage:
            save_signal(modality, coded.decoded, stage(output), attrs, self.config.scale)
            if code is not None:
                stage(code).write_bytes(coded.code)
            self.write_others(stage, coded)
            if self.config.metrics:
                write_metrics(stage(self.config.metrics), metrics)


def run_task(
    config: TaskConfig, registry: Registry, device: str | None = None, *, force: bool = False, threads: int | None = None
) -> dict[str, Any]:
    """Seed, pick the device and thread count (arguments override the config's), and run the config's task."""
    import torch

    from collagekit.device import resolve_device, set_threads

    set_threads(threads or config.threads)
    torch.manual_seed(config.seed)
    ctx = RunContext(registry=registry, device=resolve_device(device or config.device), force=force)
    return registry.get("task", config.task)(config, ctx).run()
