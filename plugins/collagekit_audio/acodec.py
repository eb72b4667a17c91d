"""The ``audio-collage`` codec: the audio modality's default for ``collagekit compress``.

Encode: each channel of the waveform is cut into segments (the end padded by repeating the last
sample), one hypernetwork pass gives every segment's latents, which are rounded to integers and
range-coded per parameter kind (:func:`collagekit.codec.encode_latent_groups`); the ranges' offsets
as differences along time where that is smaller (music, whose level wanders: -40 % of those bits). Decode: the integers
times the model's learned gains are the collage parameters; the core fixed-point solver gives every
segment's attractor at any integer ``scale`` (= scale x the sample rate), stitched and cropped.

Container header (besides the container's own fields and ``signal_attrs`` with the sample rate)::

    {"codec": "audio-collage", "modality": "audio",
     "model": {"name", "version", "sha256"},            # the weights it needs (hash of the model file)
     "signal": {"channels": 1 | 2, "samples": n},
     "quantiser": {"kind": "integer", "max_symbol": M},  # codes in [-M, M] times the model's gains
     "shape": [t, p, k],                                 # segments, latent channels, range cells
     "split": ["a", ...],                                # parameter kinds coded per channel
     "predicted": ["b"],                                 # ... as prediction residuals (if any)
     "solver": {"tol", "max_iter"}}

and one uint8 tensor ``streams``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from collagekit import budget
from collagekit.budget import CollageGeometry, collage_decode_bytes
from collagekit.codec import CellGrid, decode_latent_groups, encode_latent_groups, latent_container, read_latent_payload
from collagekit.config import parse_options
from collagekit.container import Container, header_int
from collagekit.errors import CollagekitError
from collagekit.hypercollage import PARAM_KINDS
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.pretrained import LoadedModel
from collagekit.progress import progress_bar
from collagekit.registry import plugin_versions
from collagekit_audio.config import AudioCollageOptions
from collagekit_audio.neural import AudioCollageModel, from_segments, to_segments
from collagekit_audio.pretrained import STORE

NAME = "audio-collage"
SOLVER = {"tol": 1e-4, "max_iter": 60}
CHUNK = 4096  # segments per encoder pass: bounds the feature maps' memory on long clips


class AudioCollageCodec:
    name = NAME
    encode_options = AudioCollageOptions
    decode_options = AudioCollageOptions

    def encode(self, x: Tensor, registry: Any, *, quality: int | None, device: torch.device, options: dict[str, Any]) -> Container:
        """(1 c n) in [0, 1], c = 1 or 2 -> a container (the caller adds the sample rate)."""
        opts = parse_options(f"codec {self.name!r}", self.encode_options, options)
        if x.ndim != 3 or x.shape[0] != 1 or x.shape[1] not in (1, 2) or x.shape[2] < 1:
            raise CollagekitError(f"{NAME} compresses mono or stereo audio (1 c n, c = 1 or 2), got shape {tuple(x.shape)}")
        loaded = STORE.load(str(opts.model or STORE.for_quality(quality)))
        m = loaded.model.cfg.max_symbol
        q = encode_latents(loaded.model.to(device), x.to(device)).clamp(-m, m).long().cpu()
        data, split, predicted = encode_latent_groups(_groups(loaded.model, q), m, _grids(int(x.shape[1]), loaded.model.ranges))
        fields = {"signal": {"channels": int(x.shape[1]), "samples": int(x.shape[2])}, "shape": list(q.shape)}
        return latent_container(self.name, "audio", plugin_versions(registry, self.name), loaded.reference(), fields, (data, split, predicted), m, SOLVER)

    def decode(self, container: Container, registry: Any, *, scale: int, device: torch.device, options: dict[str, Any]) -> Tensor:
        """-> (1 c n*scale) in [0, 1]."""
        opts = parse_options(f"codec {self.name!r}", self.decode_options, options)
        loaded, q, info = read_code(container, opts.model)
        wave = decode_latents(loaded.model, q, info["channels"], info["samples"], scale, device, **info["solver"])
        return ((wave + 1.0) / 2.0).clamp(0.0, 1.0)


def _grids(channels: int, ranges: int) -> dict[str, CellGrid]:
    """The offsets' group -> its range cells end to end along time, one row per audio channel."""
    return {"b": CellGrid("(n s) c k -> (n c) 1 (s k)", {"n": channels, "k": ranges})}


def _groups(model: AudioCollageModel, q: Tensor) -> dict[str, Tensor]:
    """(t p k) -> parameter kind's initial -> (t p_kind k), in coding order."""
    blocks = torch.split(q, [model.sizes[k] for k in PARAM_KINDS], dim=1)
    return {kind[0]: block for kind, block in zip(PARAM_KINDS, blocks)}


# ---------------------------------------------------------------- the work, usable without a container
@torch.no_grad()
def encode_latents(model: AudioCollageModel, x: Tensor) -> Tensor:
    """(1 c n) in [0, 1] -> rounded latents (t p k), float; t = c ceil(n / segment), channel-major."""
    segments = to_segments(x.float() * 2.0 - 1.0, model.cfg.segment)
    return torch.cat([torch.round(model.latents(part)) for part in segments.split(CHUNK)])


@torch.no_grad()
def decode_latents(
    model: AudioCollageModel, q: Tensor, channels: int, samples: int, scale: int, device: torch.device,
    *, tol: float = SOLVER["tol"], max_iter: int = SOLVER["max_iter"],
) -> Tensor:
    """Integer latents (t p k) -> the waveform (1 c n*scale) in [-1, 1] units, not clipped."""
    if not isinstance(scale, int) or scale < 1:
        raise CollagekitError(f"scale must be a positive integer, got {scale!r}")
    if channels * samples * scale > DEFAULT_MAX_ELEMENTS:
        raise CollagekitError(
            f"decoding at scale {scale} needs {channels * samples * scale:,} samples, above the limit of {DEFAULT_MAX_ELEMENTS:,}; use a smaller scale"
        )
    geometry = CollageGeometry.of_collage(model.collage, model.size)
    need = collage_decode_bytes(geometry, int(q.shape[0]), scale, {"method": "anderson"}, output=2 * channels * samples * scale)
    budget.check(need, f"decoding at scale {scale}", "use a smaller scale or rate")
    model = model.to(device)
    with progress_bar("decoding", max_iter) as bar:
        z = model.decode(q.to(device).float(), scale, tol=tol, max_iter=max_iter, on_step=bar.advance)
    return from_segments(z, 1, channels, samples * scale)


def read_code(container: Container, model_override: Any = None) -> tuple[LoadedModel, Tensor, dict[str, Any]]:
    """Validate an audio-collage container -> (model, latents (t p k) int64, info)."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: {why}")

    loaded = STORE.for_code(container.require("model"), model_override)
    signal = container.require("signal")
    if not isinstance(signal, dict):
        raise bad("the signal's shape is malformed")
    channels = header_int(signal.get("channels"), "signal.channels", 1, 2)
    samples = header_int(signal.get("samples"), "signal.samples", 1, DEFAULT_MAX_ELEMENTS // channels)
    model: AudioCollageModel = loaded.model
    expected = [channels * math.ceil(samples / model.cfg.segment), model.channels, model.ranges]
    if container.require("shape") != expected:
        raise bad(f"its parameter shape {container.header['shape']} does not fit {channels} x {samples} samples under this model")
    m = model.cfg.max_symbol
    keys = [kind[0] for kind in PARAM_KINDS]
    payload = read_latent_payload(container, NAME, m, keys)
    t, _, k = expected
    shapes = {kind[0]: (t, model.sizes[kind], k) for kind in PARAM_KINDS}
    blocks = decode_latent_groups(payload.data, shapes, payload.split, m, f"{NAME} streams", payload.predicted, _grids(channels, model.ranges))
    info = {"channels": channels, "samples": samples, "solver": payload.solver}
    return loaded, torch.cat([blocks[key] for key in keys], dim=1), info
