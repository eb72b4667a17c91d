"""The ``collagekit`` command line (typer + rich): a thin layer over :mod:`collagekit.api` and the recipes.

Commands that touch no tensor (``--help``, ``plugins``, ``list``, ``schema``, ``validate``, ``recipes``)
import no torch: registrations are lazy (:mod:`collagekit.lazy`); ``collagekit bench startup`` times them.

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
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from collagekit.errors import CollagekitError
from collagekit.plugins import PluginLoadWarning

if TYPE_CHECKING:
    import click

app = typer.Typer(
    name="collagekit",
    help="Neural Collages: data as the parameters of a contractive map whose fixed point is the data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False)

DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda (auto: CUDA when there is one)")]
BENCH_OUT = Path("bench-results")  # relative to where the command runs: never into the package or the docs
ForceOption = Annotated[bool, typer.Option("--force", "-y", help="replace output files that exist (never an input)")]

# Commands that take overrides also accept ``--some-field value`` for any field of what they run.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


class _State:
    threads: int | None = None  # the global --threads


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


def _is_main_process() -> bool:
    # Under torchrun every process runs the command; results are printed once, by rank 0.
    return os.environ.get("RANK", "0") == "0"


def _print_metrics(metrics: dict[str, Any]) -> None:
    if not _is_main_process():
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    for key, value in metrics.items():
        table.add_row(f"[bold]{key}[/bold]", str(value))
    out.print(table)


@app.callback()
def _global(
    threads: Annotated[int | None, typer.Option("--threads", min=1, max=1024, help="CPU threads for torch (default: torch's choice, one per core; on a shared machine fewer can be much faster)")] = None,
) -> None:
    """Neural Collages: data as the parameters of a contractive map whose fixed point is the data."""
    _State.threads = threads
    if threads is not None:
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        else:  # torch reads these when it is first imported; the light commands never import it
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


@app.command(context_settings=PASS_THROUGH)
def run(
    recipe: Annotated[str, typer.Argument(help="a YAML recipe file, or the name of a shipped recipe (collagekit recipes lists them)")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides of the recipe's fields, e.g. encoder.steps=50", show_default=False)] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda (default: the recipe's device, else auto)")] = None,
    force: ForceOption = False,
) -> None:
    """Run a recipe: a file, or a shipped one by name (collagekit run image_fractalize)."""
    from collagekit.recipe import load_recipe
    from collagekit.recipes import find
    from collagekit.tasks import run_task

    loaded = load_recipe(find(recipe), _registry(), _as_overrides(overrides))
    _print_metrics(run_task(loaded.config, _registry(), device, force=force, threads=_State.threads))


@app.command()
def validate(
    recipe: Annotated[str, typer.Argument(help="a YAML recipe file, or the name of a shipped recipe")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides of the recipe's fields, e.g. encoder.steps=50", show_default=False)] = None,
) -> None:
    """Check a recipe without running it."""
    from collagekit.recipe import load_recipe
    from collagekit.recipes import find

    path = find(recipe)
    loaded = load_recipe(path, _registry(), _as_overrides(overrides))
    out.print(f"ok: {path} (task {loaded.config.task})")


@app.command(context_settings=PASS_THROUGH)
def fractalize(
    file: Annotated[Path, typer.Argument(help="input file; its suffix picks the modality")],
    output: Annotated[Path, typer.Option("-o", "--output", help="decoded attractor to write")],
    scale: Annotated[int, typer.Option("--scale", min=1, max=64, help="decode at this integer scale (point clouds: points x scale)")] = 1,
    code: Annotated[Path | None, typer.Option("--code", help="where to save the code (default: OUTPUT with .clg)")] = None,
    recipe: Annotated[
        str | None,
        typer.Option("--recipe", help="start from this fractalize recipe (a file, or a shipped recipe's name such as image_fractalize_adaptive) instead of the modality's defaults"),
    ] = None,
    fields: Annotated[
        list[str] | None,
        typer.Argument(
            help="fields of the modality's fractalize task as key=value or --key value (collagekit schema lists them): "
            "images and audio e.g. encoder.steps=300 collage.partitioner.range_size=4; point clouds e.g. "
            "--maps 8 --points 200000 --png view.png",
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = "auto",
    force: ForceOption = False,
) -> None:
    """Represent FILE as a collage: fit it, save its code (.clg) and decode it at --scale x resolution.

    Images: a grid collage with the whole image as its own domain (--recipe image_fractalize_adaptive: an
    adaptive, sparse one); audio: an adaptive, sparse collage; point clouds: an IFS of --maps affine
    maps, rendered with --points points (and a --png picture).
    """
    from collagekit.api import fractalize as fractalize_data

    result = fractalize_data(
        file, output, code=code, scale=scale, recipe=recipe, overrides=_as_overrides(fields), device=device,
        threads=_State.threads, force=force,
    )
    _print_metrics(result.metrics)


@app.command(context_settings=PASS_THROUGH)
def decompress(
    file: Annotated[Path, typer.Argument(help="a .clg file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="decoded file to write")],
    scale: Annotated[int, typer.Option("--scale", min=1, max=64, help="decode at this integer scale")] = 1,
    rate: Annotated[int | None, typer.Option("--rate", min=1, help="decode at this sample rate (audio): at the next whole multiple of the stored rate, resampled to R when not exact")] = None,
    options: Annotated[
        list[str] | None,
        typer.Argument(help="the codec's decoding options as key=value or --key value, e.g. --points 1000000 for point clouds (collagekit list codec shows them)", show_default=False),
    ] = None,
    device: DeviceOption = "auto",
    force: ForceOption = False,
) -> None:
    """Decode a .clg file (from fractalize or compress), at --scale x resolution (or at --rate Hz)."""
    from collagekit.api import decompress as decompress_code

    decompress_code(file, output, scale=scale, rate=rate, options=_options(options), device=device, threads=_State.threads, force=force)
    out.print(f"wrote {output}")


@app.command()
def compress(
    files: Annotated[list[Path], typer.Argument(help="files (or folders of files) to compress; their suffix picks the modality")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="the .clg to write (a folder for several files; default: beside each input)")] = None,
    method: Annotated[str | None, typer.Option("--method", help="codec name (default: the modality's); collagekit list codec")] = None,
    quality: Annotated[int | None, typer.Option("--quality", help="codec quality level (higher: more bits)")] = None,
    options: Annotated[list[str] | None, typer.Option("-O", "--option", help="codec option key=value (repeatable; collagekit list codec shows them)")] = None,
    model: Annotated[str | None, typer.Option("--model", help="trained model for learned codecs (a name or a file); same as -O model=NAME")] = None,
    device: DeviceOption = "auto",
    force: ForceOption = False,
) -> None:
    """Compress files into .clg containers (codec options: -O key=value).

    Started by torchrun (torchrun --nproc-per-node N -m collagekit compress ...), every process
    compresses its share of the files and the first prints the table.
    """
    from collagekit.api import compress_files

    rows = compress_files(
        files, output, method=method, quality=quality, model=model, options=_options(options),
        device=device, threads=_State.threads, force=force,
    )  # fmt: skip
    if not _is_main_process():
        return
    import torch

    table = Table("input", "output", "bytes", "bits per element", "seconds", caption=f"{torch.get_num_threads()} torch threads per process")
    for row in rows:
        table.add_row(str(row.input), str(row.output), str(row.bytes), f"{row.bits_per_element:.4f}", f"{row.seconds:.2f}")
    out.print(table)


class _BenchCommand(TyperCommand):
    """``collagekit bench NAME --help`` shows that benchmark's options."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and any(a in ("--help", "-h") for a in args[1:]):
            typer.echo(_bench_help(args[0]))
            ctx.exit()
        return super().parse_args(ctx, args)


def _bench_help(name: str) -> str:
    from collagekit.config import describe_fields

    benchmark = _registry().get("bench", name)
    lines = [f"collagekit bench {name} [--data DIR] [--out DIR] [key=value ...]", "", benchmark.description, ""]
    if benchmark.default_data:
        lines += [f"Data: --data DIR, default $COLLAGEKIT_DATA/{benchmark.default_data}.", ""]
    rows = describe_fields(benchmark.options)
    lines += ["Options (key=value):"] + [f"  {k}: {t} = {d}  {text}".rstrip() for k, t, d, text in rows] if rows else ["No options."]
    if benchmark.options.__doc__ and benchmark.options.model_config.get("extra") == "allow":
        lines += ["", benchmark.options.__doc__.strip()]
    return "\n".join(lines)


@app.command(cls=_BenchCommand, context_settings=PASS_THROUGH)
def bench(
    name: Annotated[str, typer.Argument(help="benchmark name (collagekit list bench); collagekit bench NAME --help shows its options")],
    options: Annotated[list[str] | None, typer.Argument(help="the benchmark's options as key=value", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option("--data", help="data folder (default: $COLLAGEKIT_DATA/<the benchmark's folder>)")] = None,
    results: Annotated[Path, typer.Option("--out", help="folder for the results (NAME.md, NAME.json; updated in place)")] = BENCH_OUT,
    device: DeviceOption = "auto",
    threads: Annotated[int | None, typer.Option("--threads", min=1, max=1024, help="CPU threads for torch in this benchmark (as the global --threads; recorded in the results)")] = None,
) -> None:
    """Run a registered benchmark; print its figures and write them into --out (default ./bench-results)."""
    from collagekit.bench import BenchContext, data_folder
    from collagekit.device import resolve_device, set_threads
    from collagekit.recipe import parse_override

    set_threads(threads if threads is not None else _State.threads)
    benchmark = _registry().get("bench", name)
    parsed = [parse_override(text) for text in _as_overrides(options)]
    chosen = benchmark.parse(parsed)
    folder = data_folder(data, benchmark.default_data, f"bench {name}") if benchmark.default_data or data else None
    ctx = BenchContext(data=folder, out=results, device=resolve_device(device), overrides=parsed, options=chosen)
    _print_metrics(benchmark.run(ctx))


@app.command()
def recipes(
    name: Annotated[str | None, typer.Argument(help="a shipped recipe: print it (or copy it with -o)")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="copy the recipe to this file, to edit and run")] = None,
    force: ForceOption = False,
) -> None:
    """The recipes shipped with collagekit: list them, print one, or copy one out to edit (-o my.yaml)."""
    from collagekit.fileio import atomic_output, check_outputs
    from collagekit.recipes import shipped, summary
    from collagekit.registry import suggest

    known = shipped()
    if name is None:
        if output is not None:
            raise CollagekitError("name the recipe to copy: collagekit recipes NAME -o FILE")
        table = Table("name", "what it does")
        for recipe, path in known.items():
            table.add_row(recipe, summary(path))
        out.print(table)
        return
    if name not in known:
        raise CollagekitError(f"no shipped recipe {name!r}; shipped: {', '.join(known)}{suggest(name, list(known))}")
    if output is None:
        sys.stdout.write(known[name].read_text(encoding="utf-8"))
        return
    check_outputs([], [output], force)
    with atomic_output(output) as tmp:
        tmp.write_text(known[name].read_text(encoding="utf-8"), encoding="utf-8")
    out.print(f"wrote {output}: edit it, then: collagekit run {output}")


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


def _fields(model: type | None) -> str:
    """``name: type = default`` of every field."""
    from collagekit.config import describe_fields

    if model is None:
        return ""
    return ", ".join(f"{name}: {kind} = {default}" for name, kind, default, _ in describe_fields(model)) or "(none)"


def _describe(kind: str, obj: Any) -> str:
    """What ``collagekit list`` shows of a registered thing (read from its declaration: nothing is imported)."""
    if kind == "codec":
        encode = getattr(obj, "encode_options", None)
        compress = "compress: only decodes" if encode is None else f"compress -O: {_fields(encode)}"
        return f"{compress}\ndecompress: {_fields(getattr(obj, 'decode_options', None))}"
    if kind == "bench":
        return f"{obj.description}\noptions: {_fields(obj.options)}"
    if kind == "modality":
        return f"{', '.join(obj.suffixes)}\n{obj.description}"
    return _fields(getattr(obj, "Config", None))


@app.command("list")
def list_command(
    kind: Annotated[str | None, typer.Argument(help="partitioner, pooler, auxiliary, encoder, solver, head, task, modality, codec or bench")] = None,
) -> None:
    """Registered components and what configures them: config fields, codec and benchmark options (type = default)."""
    from collagekit.registry import KINDS, suggest

    registry = _registry()
    if kind is not None and kind not in KINDS:
        raise CollagekitError(f"unknown kind {kind!r}; choose from: {', '.join(KINDS)}{suggest(kind, list(KINDS))}")
    table = Table("kind", "name", "plugin", "fields / options", show_lines=True)
    for k in [kind] if kind else list(KINDS):
        for entry in registry.entries(k):
            table.add_row(k, entry.name, entry.plugin, escape(_describe(k, entry.obj)))
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
