"""The Python API: what the ``collagekit`` commands do, as functions (the commands call these).

    >>> import collagekit
    >>> code = collagekit.compress("photo.png")          # bytes of a .clg file
    >>> image = collagekit.decompress(code, scale=2)     # (c h w) tensor in [0, 1], at twice the size

Inputs are paths (the suffix picks the modality) or data in memory: a PIL image, a numpy array or a
torch tensor in the layout its library uses (images: ``(h w c)`` uint8 as Pillow gives them, or
``(c h w)`` floats in [0, 1] as torchvision does; audio: ``(c n)`` or ``(n,)`` in [-1, 1] with
``sample_rate=``; point clouds: ``(n 3)``). Data in memory is an image unless ``modality=`` says
otherwise. Outputs are bytes (codes) and tensors (decoded data, in the same layouts); with ``output=``
the file is written too, never over an input, never over an existing file unless ``force=True``, and
whole or not at all. Mistakes raise :class:`~collagekit.CollagekitError` with a one-line message.
``threads=N`` sets torch's CPU threads for the whole process (as ``torch.set_num_threads``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collagekit.errors import CollagekitError

if TYPE_CHECKING:
    import torch

    from collagekit.container import Container
    from collagekit.modality import Modality
    from collagekit.registry import Registry

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Fractal:
    """What :func:`fractalize` made: the code (a ``.clg`` file's bytes), the decoded datum at the asked
    scale (a tensor in the modality's usual layout) and the metrics (PSNR or Chamfer, times, ...)."""

    code: bytes
    decoded: torch.Tensor
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Compressed:
    """One file of :func:`compress_files`."""

    input: Path
    output: Path
    bytes: int
    bits_per_element: float  # file bytes x 8 / values per channel (pixels, samples)
    seconds: float  # encoding, without reading and writing


# ---------------------------------------------------------------- codes
def load_code(source: PathLike | bytes) -> Container:
    """A ``.clg`` file (a path, or its bytes) -> its :class:`~collagekit.container.Container`: the
    JSON ``header`` and the ``tensors``. Nothing is executed; a malformed file is a one-line error."""
    from collagekit.container import from_bytes, read_container

    if isinstance(source, bytes | bytearray | memoryview):
        return from_bytes(bytes(source))
    return read_container(source)


def save_code(code: bytes | Container, path: PathLike, *, force: bool = False) -> int:
    """Write a code (bytes or a Container) to ``path`` whole or not at all; refuses an existing file
    unless ``force``. Returns the file's size in bytes."""
    from collagekit.container import Container, from_bytes, to_bytes
    from collagekit.fileio import atomic_output, check_outputs

    data = to_bytes(code) if isinstance(code, Container) else bytes(code)
    from_bytes(data)  # never write something that is not a .clg file
    check_outputs([], [path], force)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return len(data)


# ---------------------------------------------------------------- compress / decompress
def compress(
    data: Any,
    output: PathLike | None = None,
    *,
    method: str | None = None,
    quality: int | None = None,
    model: str | None = None,
    options: dict[str, Any] | None = None,
    modality: str | None = None,
    sample_rate: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
) -> bytes:
    """Compress one datum with a codec (default: its modality's) -> the ``.clg`` file's bytes.

    ``quality`` picks a shipped model (learned codecs) or a quality level; ``model`` a model by name or
    file; ``options`` the codec's options (``collagekit list codec`` shows them). With ``output`` the
    code is also written there.
    """
    registry, resolved = _start(device, threads)
    source = _as_path(data)
    mod = _modality(registry, source, modality)
    x, attrs = _load(mod, data, source, sample_rate)
    if output is not None:
        from collagekit.fileio import check_outputs

        _check_code_name(output)
        check_outputs([source], [output], force)
    code = _encode(registry, mod, x, attrs, method, quality, _codec_options(options, model), resolved)
    if output is not None:
        save_code(code, output, force=True)  # checked above, before the work
    return code


def compress_files(
    files: list[PathLike],
    output: PathLike | None = None,
    *,
    method: str | None = None,
    quality: int | None = None,
    model: str | None = None,
    options: dict[str, Any] | None = None,
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
) -> list[Compressed]:
    """Compress files (a folder stands for the files in it that a modality reads) into ``.clg`` files:
    ``output`` itself for one file, else ``OUTPUT/NAME.clg`` (default: beside each input).

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), every process takes its share of the files (every
    WORLD_SIZE-th, from its RANK) and every process returns the rows of all files, in order.
    """
    from collagekit.container import SUFFIX
    from collagekit.fileio import check_input, check_outputs
    from collagekit.progress import progress_bar
    from collagekit.training import distributed

    registry, resolved = _start(device, threads)
    inputs = _expand(files, registry)
    if len(inputs) > 1 and output is not None and Path(output).suffix:
        raise CollagekitError("with several input files, the output must be a folder")
    targets = [
        Path(output) if output is not None and len(inputs) == 1 and Path(output).suffix else Path(output or file.parent) / file.with_suffix(SUFFIX).name
        for file in inputs
    ]
    for file in inputs:
        check_input(file)
    for target in targets:
        _check_code_name(target)
    check_outputs(inputs, targets, force)  # every process checks every file, before any writes one
    codec_options = _codec_options(options, model)
    with distributed(resolved) as group:
        if group.active:
            import torch.distributed as dist

            dist.barrier()  # no process writes before every process has checked
        mine: list[tuple[int, Compressed]] = []
        error = None
        share = list(range(group.rank, len(inputs), group.world_size))
        try:
            with progress_bar("compressing", len(share)) as bar:
                for i in share:
                    mine.append((i, _compress_file(registry, inputs[i], targets[i], method, quality, codec_options, group.device)))
                    bar.advance()
        except CollagekitError as exc:
            error = str(exc)
        everyone = [(mine, error)]
        if group.active:
            everyone = [None] * group.world_size
            dist.all_gather_object(everyone, (mine, error))
    errors = [e for _, e in everyone if e]
    if errors:
        raise CollagekitError(errors[0])
    return [row for _, row in sorted(row for rows, _ in everyone for row in rows)]


def _compress_file(
    registry: Registry, file: Path, target: Path, method: str | None, quality: int | None, options: dict[str, Any], device: torch.device
) -> Compressed:
    from collagekit.modality import DEFAULT_MAX_ELEMENTS, modality_for

    mod = modality_for(file, [e.obj for e in registry.entries("modality")])
    x = mod.load(file, DEFAULT_MAX_ELEMENTS)
    started = time.perf_counter()
    code = _encode(registry, mod, x, mod.read_attributes(file), method, quality, options, device)
    seconds = time.perf_counter() - started
    save_code(code, target, force=True)  # checked by compress_files before any work
    values = x[0, 0].numel() if x.ndim > 2 else 0
    return Compressed(file, target, len(code), len(code) * 8 / values if values else float("nan"), seconds)


def decompress(
    code: PathLike | bytes | Container,
    output: PathLike | None = None,
    *,
    scale: int = 1,
    rate: int | None = None,
    options: dict[str, Any] | None = None,
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
) -> torch.Tensor:
    """Decode a code (a ``.clg`` path, its bytes, or a Container) at ``scale`` x its resolution ->
    a tensor in its modality's usual layout (images ``(c h w)`` in [0, 1]); with ``output`` the
    file is written too.

    ``rate`` (audio): write ``output`` at this sample rate, decoding at the next whole multiple of the
    stored rate (the returned waveform is at that multiple). ``options``: the codec's decoding options.
    """
    from collagekit.container import SIGNAL_ATTRS, Container
    from collagekit.fileio import check_outputs
    from collagekit.modality import save_signal

    registry, resolved = _start(device, threads)
    source = _as_path(code)
    container = code if isinstance(code, Container) else load_code(code)
    for kind in ("codec", "modality"):
        name = container.require(kind)
        if not isinstance(name, str) or name not in registry.names(kind):
            raise CollagekitError(f"this file needs the {kind} {str(name)[:40]!r}, which no loaded plugin provides; it was written by: {container.writers()}")
    codec = registry.get("codec", container.header["codec"])
    mod = registry.get("modality", container.header["modality"])
    if output is not None:
        if Path(output).suffix.lower() not in mod.suffixes:
            raise CollagekitError(f"output {str(output)!r} must end in one of {', '.join(mod.suffixes)}")
        check_outputs([source], [output], force)
    attrs = container.header.get(SIGNAL_ATTRS, {})
    if not isinstance(attrs, dict):
        raise CollagekitError(f"corrupt .clg file: {SIGNAL_ATTRS!r} is not a mapping")
    if rate is not None:
        scale = scale_for_rate(rate, attrs.get("sample_rate"), scale)
        attrs = {**attrs, "target_rate": rate}
    if not 1 <= scale <= MAX_SCALE:
        raise CollagekitError(f"scale must be an integer from 1 to {MAX_SCALE}, got {scale}")
    decoded = codec.decode(container, registry, scale=scale, device=resolved, options=dict(options or {}))[:1].cpu()
    if output is not None:
        save_signal(mod, decoded, Path(output), attrs, scale)
    return mod.to_memory(decoded) if mod.to_memory is not None else decoded


MAX_SCALE = 64  # the largest decoding scale accepted


def scale_for_rate(rate: int, stored: Any, scale: int) -> int:
    """``rate`` -> the decoding scale: rate / stored rate when that is whole (exact), else the next
    whole multiple above it, which the writer then resamples down to ``rate``."""
    if not isinstance(stored, int) or stored < 1:
        raise CollagekitError("--rate needs a code that stores a sample rate; this one has none (use --scale)")
    if scale != 1:
        raise CollagekitError("give --rate or --scale, not both")
    if rate > MAX_SCALE * stored:
        raise CollagekitError(f"--rate {rate} is above {MAX_SCALE} x the stored sample rate {stored} Hz")
    return -(-rate // stored)


# ---------------------------------------------------------------- fractalize
def fractalize(
    data: Any,
    output: PathLike | None = None,
    *,
    code: PathLike | None = None,
    scale: int = 1,
    metrics: PathLike | None = None,
    modality: str | None = None,
    sample_rate: int | None = None,
    recipe: PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    device: str = "auto",
    threads: int | None = None,
    force: bool = False,
    **fields: Any,
) -> Fractal:
    """Fit one datum's collage (its modality's fractalize task) and decode it at ``scale``.

    ``recipe`` (a file, or a shipped recipe's name such as ``image_fractalize_adaptive``) starts from
    that fractalize recipe's settings instead of the task's defaults; its own file paths are not used.
    ``fields`` and ``overrides`` (``"encoder.steps=50"`` strings, as on the command line) set the
    task's fields (``collagekit schema`` lists them; e.g. ``maps=8`` for point clouds). With ``output``
    the decoded datum is written there and the code to ``code`` (default: ``output`` with ``.clg``),
    with ``metrics`` a JSON file: all of them or, on any error, none.
    """
    from collagekit.recipe import apply_overrides, read_recipe, validate_data
    from collagekit.recipes import find
    from collagekit.tasks import RunContext

    registry, resolved = _start(device, threads)
    source = _as_path(data)
    mod = _modality(registry, source, modality)
    if mod.fractalize_task is None:
        raise CollagekitError(f"the {mod.name} modality has no fractalize task")
    base: Any = {"task": mod.fractalize_task}
    where, lines = "fractalize", {}
    if recipe is not None:
        path = find(recipe)
        base, lines = read_recipe(path)
        where = str(path)
        if not isinstance(base, dict) or base.get("task") != mod.fractalize_task:
            task = base.get("task") if isinstance(base, dict) else None
            raise CollagekitError(f"recipe {where} runs the task {task!r}, not {mod.fractalize_task!r} (the {mod.name} fractalize task)")
        for key in ("input", "output", "code", "metrics"):  # the recipe's example files are not this call's
            base.pop(key, None)
    given: dict[str, Any] = {**base, "scale": scale, **fields}
    for key, value in (("input", source), ("output", output), ("code", code), ("metrics", metrics)):
        if value is not None:
            given[key] = str(value)
    overridden = {(k,) for k in given if k not in base or k == "scale"} | apply_overrides(given, list(overrides), registry)
    config = validate_data(given, registry, where, lines, overridden=overridden)
    ctx = RunContext(registry=registry, device=resolved, force=force)
    task = registry.get("task", config.task)(config, ctx)
    outputs = None
    if output is not None:
        outputs = config.outputs(task.output_suffixes(), ctx, [source], task.other_outputs())
    x, attrs = _load(mod, data, source, sample_rate, config.max_elements)
    coded = task.fractalize(x, attrs)
    result = {"input": str(source) if source else "<memory>", **coded.metrics}
    if outputs is not None:
        result = {**result, "output": str(outputs[0]), "code": str(outputs[1])}
        task.write(coded, *outputs, attrs, result)
    decoded = mod.to_memory(coded.decoded) if mod.to_memory is not None else coded.decoded
    return Fractal(coded.code, decoded, result)


# ---------------------------------------------------------------- shared steps
def _start(device: str, threads: int | None) -> tuple[Registry, torch.device]:
    from collagekit.device import resolve_device, set_threads
    from collagekit.registry import get_registry

    set_threads(threads)
    return get_registry(), resolve_device(device)


def _as_path(data: Any) -> Path | None:
    return Path(data) if isinstance(data, str | os.PathLike) else None


def _modality(registry: Registry, source: Path | None, name: str | None) -> Modality:
    from collagekit.modality import modality_for

    if name is not None:
        return registry.get("modality", name)
    if source is not None:
        return modality_for(source, [e.obj for e in registry.entries("modality")])
    return registry.get("modality", "image")


def _load(mod: Modality, data: Any, source: Path | None, sample_rate: int | None, max_elements: int | None = None) -> tuple[Any, dict[str, Any]]:
    """-> (the datum as the modality's load returns it, its attributes)."""
    from collagekit.fileio import check_input
    from collagekit.modality import DEFAULT_MAX_ELEMENTS

    if source is not None:
        if sample_rate is not None:
            raise CollagekitError("sample_rate is for audio in memory; a file carries its own")
        return mod.load(check_input(source), max_elements or DEFAULT_MAX_ELEMENTS), mod.read_attributes(source)
    if mod.from_memory is None:
        raise CollagekitError(f"the {mod.name} modality reads files only; give a path")
    attrs = {} if sample_rate is None else {"sample_rate": sample_rate}
    x = mod.from_memory(data, attrs)
    if x.numel() > (max_elements or DEFAULT_MAX_ELEMENTS):
        raise CollagekitError(f"the data has {x.numel():,} values, above the limit of {max_elements or DEFAULT_MAX_ELEMENTS:,}")
    return x, attrs


def _check_code_name(path: PathLike) -> None:
    from collagekit.container import SUFFIX

    if Path(path).suffix.lower() != SUFFIX:
        raise CollagekitError(f"output {str(path)!r} must end in {SUFFIX} (a compressed file), or be a folder for several inputs")


def _codec_options(options: dict[str, Any] | None, model: str | None) -> dict[str, Any]:
    merged = dict(options or {})
    if model is not None:
        merged["model"] = model
    return merged


def _encode(
    registry: Registry, mod: Modality, x: Any, attrs: dict[str, Any], method: str | None, quality: int | None,
    options: dict[str, Any], device: torch.device,
) -> bytes:  # fmt: skip
    from collagekit.container import SIGNAL_ATTRS, to_bytes
    from collagekit.registry import choose_from

    compressing = [e.name for e in registry.entries("codec") if getattr(e.obj, "encode_options", None) is not None]
    name = method or mod.default_codec
    if name is None:
        raise CollagekitError(
            f"no default compression method for {mod.name} data; method: {choose_from('codec', compressing)}"
        )
    if name in registry.names("codec") and name not in compressing:
        raise CollagekitError(f"codec {name!r} only decodes; method: {choose_from('codec', compressing)}")
    codec = registry.get("codec", name)
    container = codec.encode(x, registry, quality=quality, device=device, options=options)
    if attrs:  # most signals have none: no bytes for an empty mapping
        container.header[SIGNAL_ATTRS] = attrs
    return to_bytes(container)


def _expand(files: list[PathLike], registry: Registry) -> list[Path]:
    """Files as given; a folder stands for its files (sorted, not recursive) that some modality reads."""
    suffixes = {s for e in registry.entries("modality") for s in e.obj.suffixes}
    out: list[Path] = []
    for item in map(Path, files):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise CollagekitError(f"folder {str(item)!r} holds no file that an installed modality reads")
            out += found
        else:
            out.append(item)
    return out
