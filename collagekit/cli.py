"""The ``collagekit`` command line (typer + rich).

User mistakes raise :class:`CollagekitError` and end as one ``error: ...`` line with exit status 1
(``COLLAGEKIT_DEBUG=1`` shows the traceback); plugin load failures are one ``warning: ...`` line each.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from collagekit.errors import CollagekitError
from collagekit.plugins import PluginLoadWarning

app = typer.Typer(
    name="collagekit",
    help="Neural Collages: data as the parameters of a contractive map whose fixed point is the data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)
MAX_SCALE = 64  # the largest decoding scale the CLI accepts

DeviceOption = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda (default: the recipe's, else auto)")]
Overrides = Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. encoder.steps=50", show_default=False)]


# Commands that take overrides also accept ``--some-field value`` for any field of what they run.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _as_overrides(items: list[str] | None) -> list[str]:
    """``['--maps', '8', 'scale=2', '--png=v.png']`` -> ``['maps=8', 'scale=2', 'png=v.png']``."""
    result: list[str] = []
    items = list(items or [])
    while items:
        item = items.pop(0)
        if not item.startswith("--"):
            result.append(item)
            continue
        key, sep, value = item[2:].partition("=")
        if not sep:
            if not items or items[0].startswith("--"):
                raise CollagekitError(f"option --{key} needs a value")
            value = items.pop(0)
        result.append(f"{key.replace('-', '_')}={value}")
    return result


def _options(items: list[str] | None) -> dict[str, Any]:
    """key=value extras for a codec, as a flat dict."""
    from collagekit.recipe import parse_override

    return {".".join(map(str, path)): value for path, value in map(parse_override, _as_overrides(items))}


def _registry():
    from collagekit.registry import get_registry

    return get_registry()


def _print_metrics(metrics: dict[str, Any]) -> None:
    # Under torchrun every process runs the recipe; the result is printed once, by rank 0.
    if os.environ.get("RANK", "0") != "0":
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    for key, value in metrics.items():
        table.add_row(f"[bold]{key}[/bold]", str(value))
    out.print(table)


@app.command(context_settings=PASS_THROUGH)
def run(
    recipe: Annotated[Path, typer.Argument(help="a YAML recipe, e.g. recipes/image_fractalize.yaml")],
    overrides: Overrides = None,
    device: DeviceOption = None,
) -> None:
    """Run a recipe."""
    from collagekit.recipe import load_recipe

    loaded = load_recipe(recipe, _registry(), _as_overrides(overrides))
    from collagekit.tasks import run_task

    _print_metrics(run_task(loaded.config, _registry(), device))


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="a YAML recipe")],
    overrides: Overrides = None,
) -> None:
    """Check a recipe without running it."""
    from collagekit.recipe import load_recipe

    loaded = load_recipe(recipe, _registry(), _as_overrides(overrides))
    out.print(f"ok: {recipe} (task {loaded.config.task})")


@app.command(context_settings=PASS_THROUGH)
def fractalize(
    file: Annotated[Path, typer.Argument(help="input file; its suffix picks the modality")],
    output: Annotated[Path, typer.Option("-o", "--output", help="decoded attractor to write")],
    scale: Annotated[int, typer.Option("--scale", min=1, max=MAX_SCALE, help="decode at this integer scale")] = 1,
    code: Annotated[Path | None, typer.Option("--code", help="where to save the code (default: OUTPUT.clg)")] = None,
    overrides: Overrides = None,
    device: DeviceOption = None,
) -> None:
    """Represent FILE as a collage, save its code (.clg) and decode it, at --scale x resolution.

    Any field of the modality's fractalize task can be set as key=value or --key value.
    """
    from collagekit.fileio import check_input
    from collagekit.modality import modality_for
    from collagekit.recipe import apply_overrides, validate_data

    registry = _registry()
    check_input(file)
    modality = modality_for(file, [e.obj for e in registry.entries("modality")])
    if modality.fractalize_task is None:
        raise CollagekitError(f"the {modality.name} modality has no fractalize task")
    data: dict[str, Any] = {"task": modality.fractalize_task, "input": str(file), "output": str(output), "scale": scale}
    if code is not None:
        data["code"] = str(code)
    overridden = {(k,) for k in data} | apply_overrides(data, _as_overrides(overrides), registry)
    config = validate_data(data, registry, "fractalize", overridden=overridden)
    from collagekit.tasks import run_task

    _print_metrics(run_task(config, registry, device))


@app.command(context_settings=PASS_THROUGH)
def decompress(
    file: Annotated[Path, typer.Argument(help="a .clg file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="decoded file to write")],
    scale: Annotated[int, typer.Option("--scale", min=1, max=MAX_SCALE, help="decode at this integer scale")] = 1,
    rate: Annotated[int | None, typer.Option("--rate", min=1, help="decode at this sample rate (audio): at the next whole multiple of the stored rate, resampled to R when not exact")] = None,
    options: Overrides = None,
    device: DeviceOption = None,
) -> None:
    """Decode a .clg file (from fractalize or compress), at --scale x resolution (or at --rate Hz).

    Codec-specific options go as key=value or --key value (e.g. a point count for point clouds).
    """
    from collagekit.container import SIGNAL_ATTRS, read_container
    from collagekit.device import resolve_device
    from collagekit.modality import save_signal

    registry = _registry()
    container = read_container(file)
    for kind in ("codec", "modality"):
        name = container.require(kind)
        if not isinstance(name, str) or name not in registry.names(kind):
            raise CollagekitError(f"this file needs the {kind} {str(name)[:40]!r}, which no loaded plugin provides; it was written by: {container.writers()}")
    codec = registry.get("codec", container.header["codec"])
    modality = registry.get("modality", container.header["modality"])
    if output.suffix.lower() not in modality.suffixes:
        raise CollagekitError(f"output {str(output)!r} must end in one of {', '.join(modality.suffixes)}")
    attrs = container.header.get(SIGNAL_ATTRS, {})
    if not isinstance(attrs, dict):
        raise CollagekitError(f"corrupt .clg file: {SIGNAL_ATTRS!r} is not a mapping")
    if rate is not None:
        scale = _scale_for_rate(rate, attrs.get("sample_rate"), scale)
        attrs = {**attrs, "target_rate": rate}
    decoded = codec.decode(
        container, registry, scale=scale, device=resolve_device(device or "auto"), options=_options(options)
    )
    save_signal(modality, decoded[:1].cpu(), output, attrs, scale)
    out.print(f"wrote {output}")


def _scale_for_rate(rate: int, stored: Any, scale: int) -> int:
    """``--rate R`` -> the decoding scale: R / stored rate when that is whole (exact), else the next
    whole multiple above R, which the writer then resamples down to R."""
    if not isinstance(stored, int) or stored < 1:
        raise CollagekitError("--rate needs a code that stores a sample rate; this one has none (use --scale)")
    if scale != 1:
        raise CollagekitError("give --rate or --scale, not both")
    if rate > MAX_SCALE * stored:
        raise CollagekitError(f"--rate {rate} is above {MAX_SCALE} x the stored sample rate {stored} Hz")
    return -(-rate // stored)


@app.command()
def compress(
    files: Annotated[list[Path], typer.Argument(help="files to compress; their suffix picks the modality")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="the .clg to write (a folder for several files; default: beside each input)")] = None,
    method: Annotated[str | None, typer.Option("--method", help="codec name (default: the modality's)")] = None,
    quality: Annotated[int | None, typer.Option("--quality", help="codec quality level (higher: more bits)")] = None,
    options: Annotated[list[str] | None, typer.Option("-O", "--option", help="codec option key=value (repeatable)")] = None,
    model: Annotated[str | None, typer.Option("--model", help="trained model for learned codecs (a name or a file); same as -O model=NAME")] = None,
    device: DeviceOption = None,
) -> None:
    """Compress files into .clg containers (codec options: -O key=value)."""
    import time

    from collagekit.container import SIGNAL_ATTRS, SUFFIX, write_container
    from collagekit.device import resolve_device
    from collagekit.fileio import check_input
    from collagekit.modality import DEFAULT_MAX_ELEMENTS, modality_for
    from collagekit.progress import progress_bar
    from collagekit.registry import choose_from

    registry = _registry()
    extras = _options(options)
    if model is not None:
        extras["model"] = model
    resolved = resolve_device(device or "auto")
    if len(files) > 1 and output is not None and output.suffix:
        raise CollagekitError("with several input files, -o must be a folder")
    rows = []
    with progress_bar("compressing", len(files)) as bar:
        for file in files:
            check_input(file)
            modality = modality_for(file, [e.obj for e in registry.entries("modality")])
            name = method or modality.default_codec
            compressing = [e.name for e in registry.entries("codec") if hasattr(e.obj, "encode")]
            if name is None:
                raise CollagekitError(f"no default compression method for {modality.name} files; --method: {choose_from('codec', compressing)}")
            codec = registry.get("codec", name)
            if not hasattr(codec, "encode"):
                raise CollagekitError(f"codec {name!r} only decodes; --method: {choose_from('codec', compressing)}")
            if len(files) > 1 or output is None:
                target = (output or file.parent) / file.with_suffix(SUFFIX).name
            else:
                target = output
            x = modality.load(file, DEFAULT_MAX_ELEMENTS)
            started = time.perf_counter()
            container = codec.encode(x, registry, quality=quality, device=resolved, options=extras)
            container.header[SIGNAL_ATTRS] = modality.read_attributes(file)
            seconds = time.perf_counter() - started
            size = write_container(target, container)
            elements = x[0, 0].numel() if hasattr(x, "shape") and x.ndim > 2 else 0
            rows.append((file, target, size, size * 8 / elements if elements else float("nan"), seconds))
            bar.advance()
    table = Table("input", "output", "bytes", "bits per element", "seconds")
    for file, target, size, bits, seconds in rows:
        table.add_row(str(file), str(target), str(size), f"{bits:.4f}", f"{seconds:.2f}")
    out.print(table)


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="benchmark name (see `collagekit list bench`)")],
    data: Annotated[Path | None, typer.Option("--data", help="data folder (default: ../shared/data/...)")] = None,
    results: Annotated[Path, typer.Option("--out", help="where to write the results")] = Path("docs/results"),
    options: Overrides = None,
    device: DeviceOption = None,
) -> None:
    """Run a registered benchmark; print its figures and write them under docs/results/."""
    from collagekit.bench import BenchContext, default_data_root
    from collagekit.device import resolve_device
    from collagekit.recipe import parse_override

    benchmark = _registry().get("bench", name)
    folder = data if data is not None else default_data_root() / benchmark.default_data
    if not folder.is_dir():
        raise CollagekitError(f"benchmark data folder {str(folder)!r} does not exist; pass --data DIR")
    parsed = [parse_override(text) for text in options or []]
    ctx = BenchContext(data=folder, out=results, device=resolve_device(device or "auto"), overrides=parsed)
    _print_metrics(benchmark.run(ctx))


@app.command("plugins")
def plugins_command() -> None:
    """Installed plugins, their versions and the hooks they implement."""
    registry = _registry()
    table = Table("plugin", "distribution", "version", "hooks", "status")
    for info in [*registry.pm.info.values(), *registry.pm.disabled]:
        status = "ok" if info.error is None else f"failed: {info.error}"
        status += "".join(f"; {note}" for note in info.notes)
        table.add_row(info.name, info.dist, info.version, ", ".join(info.hooks), status)
    out.print(table)


def _field_summary(config_cls) -> str:
    parts = []
    for fname, info in config_cls.model_fields.items():
        if fname in ("name", "task"):
            continue
        default = "required" if info.is_required() else repr(info.get_default(call_default_factory=True))
        parts.append(f"{fname}={default}")
    return ", ".join(parts)


@app.command("list")
def list_command(
    kind: Annotated[str | None, typer.Argument(help="partitioner, pooler, auxiliary, encoder, solver, head, task, modality, codec or bench")] = None,
) -> None:
    """Registered components: name, owning plugin and config fields."""
    from collagekit.registry import KINDS, suggest

    registry = _registry()
    if kind is not None and kind not in KINDS:
        raise CollagekitError(f"unknown kind {kind!r}; choose from: {', '.join(KINDS)}{suggest(kind, list(KINDS))}")
    table = Table("kind", "name", "plugin", "fields")
    for k in [kind] if kind else list(KINDS):
        for entry in registry.entries(k):
            config = getattr(entry.obj, "Config", None)
            if config is not None:
                fields = _field_summary(config)
            else:
                fields = ", ".join(getattr(entry.obj, "suffixes", ())) or getattr(entry.obj, "description", "")
            table.add_row(k, entry.name, entry.plugin, fields)
    out.print(table)


@app.command()
def schema() -> None:
    """The JSON schema of recipes accepted by the installed plugins."""
    from collagekit.recipe import recipe_schema

    sys.stdout.write(json.dumps(recipe_schema(_registry()), indent=2) + "\n")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings read like errors: one ``warning: ...`` line (with COLLAGEKIT_DEBUG, Python's own format)."""
    if issubclass(category, PluginLoadWarning) or os.environ.get("COLLAGEKIT_DEBUG", "") in ("", "0"):
        sys.stderr.write(f"warning: {_one_line(str(message))}\n")
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


_commands_added: set[str] = set()


def _add_plugin_commands() -> None:
    from collagekit.plugins import report_failure
    from collagekit.registry import get_plugin_manager

    pm = get_plugin_manager()  # not the registry: --help and plugin commands need no components
    for impl in pm.hook.register_commands.get_hookimpls():
        if impl.plugin_name in _commands_added:
            continue  # main() may run more than once in a process (tests, notebooks)
        _commands_added.add(impl.plugin_name)
        try:
            impl.function(cli=app)
        except Exception as exc:  # noqa: BLE001 - a plugin's broken command must not break the CLI
            report_failure(pm.info[impl.plugin_name], exc, strict=False)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup (temporary files) runs as for Ctrl-C."""


def _terminate(signum: int, frame: Any) -> None:  # noqa: ARG001 - the signal module's signature
    raise Terminated


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


# Click's exception classes, from typer's public BadParameter: recent typer vendors its own copy of Click.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _usage_error(exc: Any) -> str:
    """Click's usage error as one line that says where to read more."""
    where = exc.ctx.command_path if exc.ctx is not None else "collagekit"
    return f"{_one_line(exc.format_message())} (see '{where} --help')"


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation the budget did not foresee failed (Python's, or torch's CPU or CUDA allocator)."""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("can't allocate memory", "out of memory"))
    )


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: every user mistake ends as one ``error: ...`` line and a non-zero exit status (2
    for command-line usage, Click's convention; 1 otherwise), SIGTERM like Ctrl-C (cleanly, 143)."""
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    debug = os.environ.get("COLLAGEKIT_DEBUG", "") not in ("", "0")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        _add_plugin_commands()
        code = app(args=argv, prog_name="collagekit", standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # a bare command prints its help
        elif debug:
            raise
        else:
            sys.stderr.write(f"error: {_usage_error(exc)}\n")
        raise SystemExit(exc.exit_code) from None
    except (ClickException, CollagekitError) as exc:
        if debug:
            raise
        message = exc.format_message() if isinstance(exc, ClickException) else str(exc)
        sys.stderr.write(f"error: {_one_line(message)}\n")
        raise SystemExit(getattr(exc, "exit_code", 1) if isinstance(exc, ClickException) else 1) from None
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except Terminated:
        sys.stderr.write("terminated\n")
        raise SystemExit(143) from None
    except (MemoryError, RuntimeError) as exc:
        if debug or not _out_of_memory(exc):
            raise
        from collagekit.budget import ENV_LIMIT

        first = _one_line(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        sys.stderr.write(f"error: out of memory ({first[:200]}); this machine has less free memory than {ENV_LIMIT} allows: lower it\n")
        raise SystemExit(1) from None
    finally:
        warnings.showwarning = previous
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    if code == 130:  # typer turns Ctrl-C into exit status 130
        sys.stderr.write("interrupted\n")
    if isinstance(code, int) and code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
