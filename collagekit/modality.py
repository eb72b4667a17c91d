"""Modalities: which files a plugin reads and writes, and which task fractalizes them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collagekit.errors import CollagekitError

if TYPE_CHECKING:
    from torch import Tensor

DEFAULT_MAX_ELEMENTS = 1 << 26  # 64 M values: a 4k x 4k RGB image is 48 M


@dataclass(frozen=True)
class Modality:
    """A kind of data, registered through ``register_modalities``.

    load: (path, max_elements) -> (1 c *spatial) in [0, 1]; raises CollagekitError on bad files.
    save: ((1 c *spatial), path, **attrs) -> None; writes a file that opens on its own.
    attributes: path -> what ``save`` must be told beside the samples (audio: ``sample_rate``), or
        None for modalities whose files need nothing else. Codecs keep them in the .clg header
        (``signal_attrs``); ``save`` gets them back with ``scale`` — see :func:`save_signal`.
    from_memory: (data in memory, attrs) -> (1 c *spatial) as ``load`` returns it, for the Python API
        (:func:`collagekit.compress` of an array, a tensor or a PIL image); None: files only.
    to_memory: (1 c *spatial) -> the tensor layout users of this kind of data expect (images
        ``(c h w)`` in [0, 1]); what :func:`collagekit.decompress` returns. None: as decoded.
    fractalize_task: the task ``collagekit fractalize FILE`` runs for this modality's files.
    default_codec: the codec ``collagekit compress FILE`` uses when no ``--method`` is given.

    The callables may be :class:`~collagekit.lazy.Lazy` stand-ins, so that the declaration imports
    nothing heavy.
    """

    name: str
    suffixes: tuple[str, ...]
    load: Callable[[Path, int], Tensor]
    save: Callable[..., None]
    attributes: Callable[[Path], dict[str, Any]] | None = None
    from_memory: Callable[[Any, dict[str, Any]], Tensor] | None = None
    to_memory: Callable[[Tensor], Tensor] | None = None
    fractalize_task: str | None = None
    default_codec: str | None = None
    description: str = ""

    def read_attributes(self, path: Path) -> dict[str, Any]:
        return self.attributes(path) if self.attributes is not None else {}


def save_signal(modality: Modality, z: Tensor, path: Path, attrs: dict[str, Any], scale: int) -> None:
    """Write a decoded signal; a modality with attributes gets them and the decoding scale."""
    if modality.attributes is None:
        modality.save(z, path)
        return
    clash = sorted(set(attrs) & {"z", "path", "scale"} | {k for k in attrs if not isinstance(k, str) or not k.isidentifier()})
    if clash:  # attributes come from a file's header: they must not pose as the writer's own arguments
        raise CollagekitError(f"corrupt .clg file: its signal attributes hold {', '.join(map(repr, clash))[:80]}")
    modality.save(z, path, **attrs, scale=scale)


def modality_for(path: str | Path, modalities: list[Modality]) -> Modality:
    suffix = Path(path).suffix.lower()
    for modality in modalities:
        if suffix in modality.suffixes:
            return modality
    from collagekit.registry import choose_from

    known = sorted({s for m in modalities for s in m.suffixes})
    raise CollagekitError(f"no installed modality reads {suffix or 'files without a suffix'!r} files; {choose_from('modality', known)}")
