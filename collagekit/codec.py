"""Quantisation and entropy coding shared by every compressing codec (images, audio, neural codes).

* :func:`quantize` / :func:`dequantize`: uniform scalar quantisation of values in ``[lo, hi]`` to
  ``levels`` integer codes ``0 .. levels-1`` (both ends are reconstruction points).
* :func:`signed_streams` / :func:`signed_from_streams`: signed integers of any spread as three streams
  (a magnitude class, a sign, the bits below the leading one), so a wide-ranging value costs about its
  own bit length plus the class's entropy, and no table grows with the range.
* :func:`encode_symbols` / :func:`decode_symbols`: several named streams of integers, stream ``k``
  over the alphabet ``[0, n_k)``, range-coded (``constriction``'s queue coder) into one byte string that
  carries everything needed to decode it. Per stream the encoder picks the cheaper of a uniform model
  (no table) and a static categorical model whose symbol counts are stored in the bytes (varints), so
  near-uniform streams (block indices) pay no table and skewed ones (quantised coefficients) compress.
  A caller that knows a stream's statistics in advance passes a trained :class:`StreamPrior` for it
  (both sides must): the stream may then be coded adaptively from the prior, with no table at all.

Byte layout (all integers are LEB128 varints unless said otherwise)::

    b"CKS1"  n_streams  { len(name) name  alphabet  count  kind  [counts x alphabet if kind==2] }...
    n_words  range-coder words (uint32, little-endian)  crc32(everything before, uint32 LE)

or, when the caller's own format fixes the streams' names, order and alphabets (``described=False``:
~5 bytes less per stream, which small files feel), ``b"CKS2"`` with ``{ count  kind  [counts] }`` per
stream and the rest alike; decoding it needs those ``alphabets``.

``kind``: 0 = nothing coded (empty stream or a one-symbol alphabet), 1 = uniform, 2 = categorical,
3 = adaptive from the caller's prior (:class:`StreamPrior`).
The CRC makes corrupted bytes a :class:`CollagekitError` rather than silently different symbols: a range
decoder fed garbage returns garbage without complaint. Store the bytes in a ``.clg`` container as a
uint8 tensor (:func:`as_tensor`).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from collagekit.container import Container
from collagekit.errors import CollagekitError
from collagekit.prediction import med_reconstruct, med_residuals

MAGIC = b"CKS1"
MAGIC_UNNAMED = b"CKS2"  # names and alphabets left to the caller
MAX_ALPHABET = 1 << 24  # constriction's models work with 24-bit probabilities
MAX_TABLE_ALPHABET = 1 << 12  # larger alphabets always use the uniform model (a table would not pay)
KIND_NONE, KIND_UNIFORM, KIND_CATEGORICAL, KIND_PRIOR = 0, 1, 2, 3
# An adaptive stream's model is updated after blocks that grow by this factor (one symbol each at first):
# on sparse-collage streams within ~5 % of the saving of an update after every symbol, for a decoder call
# per block (~90 for 24,000 symbols) instead of one per symbol.
PRIOR_GROWTH = 1.1


@dataclass(frozen=True)
class StreamPrior:
    """A stream's trained starting distribution for adaptive coding: the symbols of each block are
    coded with ``(strength * probabilities + counts so far) / (strength + symbols so far)``, so the
    prior weighs as ``strength`` symbols and the stream's own statistics take over as it goes.

    probabilities: (K,) float64, every one > 0, summing to 1 (K: the stream's alphabet).
    """

    probabilities: np.ndarray
    strength: float

    def __post_init__(self) -> None:
        p = self.probabilities
        if p.ndim != 1 or p.size < 1 or not np.all(p > 0) or abs(float(p.sum()) - 1.0) > 1e-6 or not 0 < self.strength < math.inf:
            raise ValueError("a stream prior needs positive probabilities summing to 1 and a positive strength")

    def model(self, counts: np.ndarray, seen: int) -> np.ndarray:
        """(K,) the probabilities after ``seen`` symbols with these ``counts`` (K,)."""
        return (self.strength * self.probabilities + counts) / (self.strength + seen)

    def models(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (bounds (B + 1,), each symbol's block (n,), each block's model (B K)) for coding ``symbols``:
        the values :meth:`model` gives a decoder block by block."""
        bounds, block_of, seen = adaptive_blocks(symbols, self.probabilities.size)
        return bounds, block_of, (self.strength * self.probabilities + seen) / (self.strength + bounds[:-1])[:, None]

    def bits(self, symbols: np.ndarray) -> float:
        """The ideal code length of ``symbols`` (within a few bytes of what the range coder writes)."""
        _, block_of, models = self.models(symbols)
        return float(-np.log2(models[block_of, symbols]).sum())


def adaptive_blocks(symbols: np.ndarray, alphabet: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The adaptive coder's schedule for a stream: (bounds (B + 1,): block b is ``[bounds[b],
    bounds[b + 1])``, each symbol's block (n,), the counts of the symbols before each block (B K))."""
    bounds = _block_bounds(symbols.size)
    block_of = np.repeat(np.arange(bounds.size - 1), np.diff(bounds))
    per_block = np.bincount(block_of * alphabet + symbols, minlength=(bounds.size - 1) * alphabet).reshape(-1, alphabet)
    return bounds, block_of, np.cumsum(per_block, axis=0) - per_block


@lru_cache(maxsize=1024)
def _block_bounds(n: int) -> np.ndarray:
    bounds, start = [0], 0
    while start < n:
        start = min(n, max(start + 1, int(start * PRIOR_GROWTH)))
        bounds.append(start)
    out = np.array(bounds, dtype=np.int64)
    out.flags.writeable = False  # shared by every caller through the cache
    return out


# ---------------------------------------------------------------- scalar quantisation
def quantize(x: Tensor, lo: float | Tensor, hi: float | Tensor, levels: int) -> Tensor:
    """Values (any shape) -> int64 codes in ``[0, levels)``: nearest of ``levels`` points spread
    uniformly over ``[lo, hi]`` (values outside are clamped to the ends)."""
    if levels < 2:
        raise ValueError(f"a quantiser needs at least 2 levels, got {levels}")
    t = (x - lo) / (hi - lo) * (levels - 1)
    return t.round().clamp(0, levels - 1).long()


def dequantize(q: Tensor, lo: float | Tensor, hi: float | Tensor, levels: int) -> Tensor:
    """Codes from :func:`quantize` -> their reconstruction values (float32)."""
    return lo + q.float() * ((hi - lo) / (levels - 1))


# ---------------------------------------------------------------- signed integers of any spread
MAX_CLASS = 25  # magnitudes below 2**25


def signed_streams(name: str, q: Tensor) -> tuple[dict[str, Tensor], dict[str, int]]:
    """(n,) int64 with |q| < 2**MAX_CLASS -> three streams for :func:`encode_symbols` and their alphabets.

    ``name.c``: each value's magnitude class (its bit length, 0 for zero: the categorical model learns
    the spread); ``name.s``: the sign of every non-zero value; ``name.m``: the bits below the leading
    ones, position by position (near uniform, so a value costs about its own bit length plus its
    class's entropy). Like JPEG's size category with its extra bits."""
    mag = q.abs()
    if mag.numel() and int(mag.max()) >= 1 << MAX_CLASS:
        raise ValueError(f"stream {name!r}: a magnitude reaches 2**{MAX_CLASS}")
    cls = torch.frexp(mag.double()).exponent.long()  # the bit length, exact (mag = m 2**e, 0.5 <= m < 1; 0 -> 0)
    low = (cls - 1).clamp_min(0)  # bits below the leading one
    # Bit position by position (the first bit below the leading one of every value that has one, then
    # the second, ...): temporaries of n values, never n x MAX_CLASS.
    bits = [(mag[low > p] >> (low[low > p] - 1 - p)) & 1 for p in range(int(low.max()) if low.numel() else 0)]
    streams = {f"{name}.c": cls, f"{name}.s": (q[mag > 0] < 0).long(), f"{name}.m": torch.cat(bits) if bits else low[:0]}
    return streams, {f"{name}.c": MAX_CLASS + 1, f"{name}.s": 2, f"{name}.m": 2}


def signed_from_streams(name: str, decoded: Mapping[str, np.ndarray], count: int, what: str) -> Tensor:
    """The ``name.*`` streams of :func:`decode_symbols`' result -> (count,) int64 values; checks that
    they hold what :func:`signed_streams` writes for ``count`` values."""
    def fail(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt {what}: {why}")

    if any(f"{name}.{part}" not in decoded for part in "csm"):
        raise fail(f"streams {name}.c, {name}.s and {name}.m are not all there")
    cls, sign, bits = (torch.from_numpy(decoded[f"{name}.{part}"]) for part in "csm")
    if cls.numel() != count:
        raise fail(f"stream {name}.c holds {cls.numel()} values, not {count}")
    low = (cls - 1).clamp_min(0)
    if sign.numel() != int((cls > 0).sum()) or bits.numel() != int(low.sum()):
        raise fail(f"streams {name}.s and {name}.m do not match the classes in {name}.c")
    mag = torch.where(cls > 0, 1 << low, 0)
    first = 0
    for p in range(int(low.max()) if count else 0):  # bit p below the leading one, for every value that has it
        has = low > p
        n = int(has.sum())
        mag[has] += bits[first : first + n] << (low[has] - 1 - p)
        first += n
    mag[cls > 0] *= 1 - 2 * sign
    return mag


# ---------------------------------------------------------------- varints
def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"varints are non-negative, got {value}")
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return


class _Reader:
    """Bounds-checked reading of the byte layout; every failure is a one-line CollagekitError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def fail(self, why: str) -> CollagekitError:
        return CollagekitError(f"corrupt {self.what}: {why}")

    def varint(self, limit: int) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise self.fail("it ends early (truncated)")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift > 63:
                raise self.fail("an integer field is too long")
        if value > limit:
            raise self.fail(f"a field holds {value}, above its limit {limit}")
        return value

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise self.fail("it ends early (truncated)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


# ---------------------------------------------------------------- entropy coding


def _models():
    import constriction  # imported on use: only codecs need it

    return constriction.stream.model, constriction.stream.queue


def _categorical(counts: np.ndarray):
    model, _ = _models()
    return model.Categorical(counts.astype(np.float64), perfect=False)


def _table_bits(counts: np.ndarray) -> int:
    # Varint bytes for every count: 1 byte below 128, 2 below 16384, ...
    nonzero = np.maximum(counts, 1)
    return int(8 * np.sum(np.floor(np.log2(nonzero) / 7) + 1))


def _choose_kind(symbols: np.ndarray, alphabet: int, prior: StreamPrior | None) -> tuple[int, np.ndarray | None]:
    """The cheapest model of a stream: uniform, a stored table or (given one) its prior."""
    if symbols.size == 0 or alphabet == 1:
        return KIND_NONE, None
    costs: dict[int, float] = {KIND_UNIFORM: symbols.size * math.log2(alphabet)}
    counts = None
    if alphabet <= MAX_TABLE_ALPHABET:
        counts = np.bincount(symbols, minlength=alphabet).astype(np.int64)
        p = counts[counts > 0] / symbols.size
        costs[KIND_CATEGORICAL] = float(-(counts[counts > 0] * np.log2(p)).sum()) + _table_bits(counts)
    if prior is not None:
        costs[KIND_PRIOR] = prior.bits(symbols)
    kind = min(costs, key=costs.__getitem__)
    return kind, counts if kind == KIND_CATEGORICAL else None


def _check_prior(name: str, alphabet: int, prior: StreamPrior | None) -> None:
    if prior is not None and prior.probabilities.size != alphabet:
        raise ValueError(f"stream {name!r}: its prior covers {prior.probabilities.size} symbols, the alphabet has {alphabet}")


def encode_symbols(
    streams: Mapping[str, np.ndarray | Tensor],
    alphabets: Mapping[str, int],
    priors: Mapping[str, StreamPrior] | None = None,
    *,
    described: bool = True,
) -> bytes:
    """Named integer streams -> one byte string, self-describing but for the ``priors``.

    streams: name -> 1-D integers, every value in ``[0, alphabets[name])``. Decoding returns them in
    the same order (dicts keep insertion order), as int64 arrays. priors: name -> the trained prior a
    stream may be coded with (the decoder must be given the same). described: store the streams' names
    and alphabets (False: the decoder is given them, in this order).
    """
    priors = priors or {}
    _, queue = _models()
    if set(streams) != set(alphabets):
        raise ValueError(f"streams {sorted(streams)} and alphabets {sorted(alphabets)} name different streams")
    head = bytearray(MAGIC if described else MAGIC_UNNAMED)
    _put_varint(head, len(streams))
    encoder = queue.RangeEncoder()
    for name, values in streams.items():
        alphabet = int(alphabets[name])
        symbols = np.asarray(values.cpu() if isinstance(values, Tensor) else values).astype(np.int64).ravel()
        if not 1 <= alphabet <= MAX_ALPHABET:
            raise ValueError(f"stream {name!r}: alphabet size {alphabet} is outside [1, {MAX_ALPHABET}]")
        if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
            raise ValueError(f"stream {name!r}: symbols must lie in [0, {alphabet}), got [{symbols.min()}, {symbols.max()}]")
        if described:
            encoded_name = name.encode()
            _put_varint(head, len(encoded_name))
            head += encoded_name
            _put_varint(head, alphabet)
        _put_varint(head, symbols.size)
        prior = priors.get(name)
        _check_prior(name, alphabet, prior)
        kind, counts = _choose_kind(symbols, alphabet, prior)
        head.append(kind)
        if kind == KIND_PRIOR:
            assert prior is not None
            bounds, _, models = prior.models(symbols)
            coded = symbols.astype(np.int32)
            for b in range(bounds.size - 1):
                encoder.encode(coded[bounds[b] : bounds[b + 1]], _categorical(models[b]))
        elif kind == KIND_CATEGORICAL:
            for c in counts.tolist():
                _put_varint(head, c)
            encoder.encode(symbols.astype(np.int32), _categorical(counts))
        elif kind == KIND_UNIFORM:
            model, _ = _models()
            encoder.encode(symbols.astype(np.int32), model.Uniform(alphabet))
    words = np.asarray(encoder.get_compressed(), dtype="<u4")
    _put_varint(head, words.size)
    body = bytes(head) + words.tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def decode_symbols(
    data: bytes,
    alphabets: Mapping[str, int] | None = None,
    *,
    max_symbols: int = 1 << 26,
    what: str = "entropy-coded stream",
    priors: Mapping[str, StreamPrior] | None = None,
) -> dict[str, np.ndarray]:
    """Bytes from :func:`encode_symbols` -> name -> int64 array.

    ``alphabets``: when given, the streams must be exactly these names with these alphabet sizes (a
    decoder checks the file against what its header implies); bytes written with ``described=False``
    need them, in the encoder's order. ``max_symbols`` bounds the total
    count before anything is allocated. ``priors``: those the encoder was given. Any malformation
    raises a one-line CollagekitError.
    """
    priors = priors or {}
    magic = data[: len(MAGIC)]
    if len(data) < len(MAGIC) + 4 or magic not in (MAGIC, MAGIC_UNNAMED):
        raise CollagekitError(f"corrupt {what}: it does not start with the {MAGIC!r} or {MAGIC_UNNAMED!r} marker")
    described = magic == MAGIC
    if not described and alphabets is None:
        raise CollagekitError(f"corrupt {what}: its streams are not named, and this decoder does not know them")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise CollagekitError(f"corrupt {what}: its checksum does not match (damaged or truncated)")
    reader = _Reader(body, what)
    reader.take(len(MAGIC))
    n_streams = reader.varint(1 << 16)
    if not described and n_streams != len(alphabets or {}):
        raise reader.fail(f"it holds {n_streams} streams, not the {len(alphabets or {})} expected")
    expected = list((alphabets or {}).items())
    specs: list[tuple[str, int, int, int, np.ndarray | None]] = []
    total = 0
    for i in range(n_streams):
        if described:
            try:
                name = reader.take(reader.varint(1 << 10)).decode()
            except UnicodeDecodeError:
                raise reader.fail("a stream name is not text") from None
            alphabet = reader.varint(MAX_ALPHABET)
        else:
            name, alphabet = expected[i][0], int(expected[i][1])
        count = reader.varint(max_symbols)
        total += count
        if alphabet < 1 or total > max_symbols:
            raise reader.fail(f"stream {name!r} has alphabet {alphabet} and {count} symbols (too many in all)")
        kind = reader.take(1)[0]
        counts = None
        if kind == KIND_CATEGORICAL:
            if alphabet > MAX_TABLE_ALPHABET:
                raise reader.fail(f"stream {name!r} has a table for {alphabet} symbols")
            counts = np.array([reader.varint(max_symbols) for _ in range(alphabet)], dtype=np.int64)
            if counts.sum() != count:
                raise reader.fail(f"stream {name!r}: its table does not add up to its length")
        elif kind == KIND_PRIOR:
            prior = priors.get(name)
            if prior is None or prior.probabilities.size != alphabet:
                raise reader.fail(f"stream {name!r} was coded with a trained prior this decoder was not given")
        elif kind not in (KIND_NONE, KIND_UNIFORM) or (kind == KIND_NONE and count and alphabet != 1):
            raise reader.fail(f"stream {name!r} has an unknown model kind {kind}")
        specs.append((name, alphabet, count, kind, counts))
    n_words = reader.varint(len(body) // 4)
    words = np.frombuffer(reader.take(4 * n_words), dtype="<u4").astype(np.uint32)
    if reader.pos != len(body):
        raise reader.fail("it has trailing bytes")
    if alphabets is not None:
        found = {name: alphabet for name, alphabet, *_ in specs}
        if found != dict(alphabets) or len(found) != len(specs):
            raise CollagekitError(f"corrupt {what}: its streams {found} are not the expected {dict(alphabets)}")

    model, queue = _models()
    decoder = queue.RangeDecoder(words)
    result: dict[str, np.ndarray] = {}
    for name, alphabet, count, kind, counts in specs:
        if kind == KIND_NONE:
            result[name] = np.zeros(count, dtype=np.int64)
            continue
        try:
            if kind == KIND_PRIOR:
                result[name] = _decode_adaptive(decoder, priors[name], count)
            else:
                chosen = _categorical(counts) if kind == KIND_CATEGORICAL else model.Uniform(alphabet)
                result[name] = np.asarray(decoder.decode(chosen, count), dtype=np.int64)
        except Exception as exc:  # noqa: BLE001 - constriction raises its own error types
            raise reader.fail(f"stream {name!r} does not decode ({type(exc).__name__})") from None
    return result


def _decode_adaptive(decoder: Any, prior: StreamPrior, count: int) -> np.ndarray:
    """The inverse of the encoder's adaptive blocks: each block's model from the symbols before it."""
    out = np.empty(count, dtype=np.int64)
    seen = np.zeros(prior.probabilities.size, dtype=np.int64)
    bounds = _block_bounds(count)
    for b in range(bounds.size - 1):
        start, end = int(bounds[b]), int(bounds[b + 1])
        block = np.asarray(decoder.decode(_categorical(prior.model(seen, start)), end - start), dtype=np.int64)
        out[start:end] = block
        seen += np.bincount(block, minlength=seen.size)
    return out


def as_tensor(data: bytes) -> Tensor:
    """Bytes -> a uint8 tensor, for a container."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def from_tensor(t: Tensor, what: str = "entropy-coded stream") -> bytes:
    """A container's uint8 tensor -> bytes (checks the dtype and rank)."""
    if t.dtype != torch.uint8 or t.ndim != 1:
        raise CollagekitError(f"corrupt {what}: expected a 1-D uint8 tensor, got {t.dtype} of shape {tuple(t.shape)}")
    return t.numpy().tobytes()


# ---------------------------------------------------------------- signed latent groups (learned codecs)
# A stream whose values are prediction residuals (see CellGrid) is named with this suffix, so a reader
# that does not know about prediction refuses the file instead of decoding residuals as values.
PREDICTED_SUFFIX = "p"


@dataclass(frozen=True)
class CellGrid:
    """Where a latent group's range cells lie in the signal, for predictive coding.

    ``pattern`` is an einops pattern from the group's (t c k) block to planes of neighbouring cells
    (n h w) (for an image: tiles and the cells inside them back in their places; for audio: segments
    end to end, ``h`` = 1); ``sizes`` are the axis lengths it needs.
    """

    pattern: str
    sizes: Mapping[str, int]

    def residuals(self, block: Tensor) -> Tensor:
        """(t c k) integers -> (t c k) residuals from :func:`collagekit.prediction.med_residuals`."""
        return self._to_block(med_residuals(rearrange(block, self.pattern, **self.sizes)))

    def reconstruct(self, residuals: Tensor) -> Tensor:
        """Inverse of :meth:`residuals`."""
        return self._to_block(med_reconstruct(rearrange(residuals, self.pattern, **self.sizes)))

    def _to_block(self, grid: Tensor) -> Tensor:
        source, target = self.pattern.split("->")
        return rearrange(grid, f"{target} -> {source}", **self.sizes)


def _group_streams(key: str, block: Tensor, split: bool, predicted: bool = False) -> dict[str, Tensor]:
    """(t c k) integers -> one flat stream ``key``, or one per channel ``key0``, ``key1``, ...

    Predicted groups' names end in :data:`PREDICTED_SUFFIX` (``key`` + ``p``, or ``key0p``, ...)."""
    end = PREDICTED_SUFFIX if predicted else ""
    if not split:
        return {key + end: block.reshape(-1)}
    return {f"{key}{j}{end}": block[:, j].reshape(-1) for j in range(block.shape[1])}


def _encode_signed(streams: Mapping[str, Tensor], bound: int) -> bytes:
    """Offset every stream by its largest magnitude h <= ``bound`` (listed in stream ``h``), then range-code."""
    half = {n: int(v.abs().max()) if v.numel() else 0 for n, v in streams.items()}
    coded: dict[str, Tensor] = {n: v + half[n] for n, v in streams.items()}
    coded["h"] = torch.tensor(list(half.values()), dtype=torch.long)
    alphabets = {n: 2 * h + 1 for n, h in half.items()} | {"h": bound + 1}
    return encode_symbols(coded, alphabets)


def _bound(max_symbol: int, predicted: Collection[str]) -> int:
    # A prediction lies between two values in [-M, M], so a residual lies in [-2M, 2M].
    return 2 * max_symbol if predicted else max_symbol


def encode_latent_groups(
    groups: Mapping[str, Tensor], max_symbol: int, grids: Mapping[str, CellGrid] | None = None
) -> tuple[bytes, list[str], list[str]]:
    """Integer latent groups, key -> (t c k) in ``[-max_symbol, max_symbol]`` -> (bytes, split keys,
    predicted keys).

    Each group is coded in whichever way is smallest: as one stream or one stream per channel
    (channels differ a lot in spread; a table per channel pays off once a group carries enough bits),
    and, for the groups ``grids`` places in the signal, as values or as residuals from their
    neighbours' prediction (it pays where values follow the signal's local level, like a range's
    offset). The keys are stored in the bytes: keep them short. The decoder needs both lists.
    """
    grids = grids or {}
    plain = {key: _best_layout(key, block, False, max_symbol) for key, block in groups.items()}
    residual = {key: _best_layout(key, grids[key].residuals(block), True, max_symbol) for key, block in groups.items() if key in grids}

    def assemble(predicted: list[str]) -> tuple[bytes, list[str], list[str]]:
        chosen = {key: residual[key] if key in predicted else plain[key] for key in groups}
        streams = {name: values for layout in chosen.values() for name, values in layout[0].items()}
        split = [key for key, layout in chosen.items() if layout[1]]
        return _encode_signed(streams, _bound(max_symbol, predicted)), split, predicted

    # Choices are made group by group; the residuals' wider bound also costs every group's entry in
    # the "h" stream a bit, so prediction is kept only if the whole result is smaller.
    preferred = [key for key in residual if residual[key][2] < plain[key][2]]
    results = [assemble([])] + ([assemble(preferred)] if preferred else [])
    return min(results, key=lambda r: len(r[0]))


def _best_layout(key: str, block: Tensor, predicted: bool, max_symbol: int) -> tuple[dict[str, Tensor], bool, int]:
    """A group's streams as one or one per channel, whichever codes smaller -> (streams, split, bytes)."""
    bound = _bound(max_symbol, [key] if predicted else [])
    options = []
    for split in (False, True):
        streams = _group_streams(key, block, split, predicted)
        options.append((streams, split, len(_encode_signed(streams, bound))))
    return min(options, key=lambda o: o[2])


def decode_latent_groups(
    data: bytes,
    shapes: Mapping[str, tuple[int, int, int]],
    split: Collection[str],
    max_symbol: int,
    what: str,
    predicted: Collection[str] = (),
    grids: Mapping[str, CellGrid] | None = None,
) -> dict[str, Tensor]:
    """Inverse of :func:`encode_latent_groups`: key -> (t c k) int64, checked against ``shapes`` and
    ``[-max_symbol, max_symbol]``. ``grids`` must place every predicted key."""

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt {what}: {why}")

    grids = grids or {}
    if not set(predicted) <= set(grids):
        raise bad(f"it predicts groups {sorted(set(predicted) - set(grids))} that have no place in the signal")
    bound = _bound(max_symbol, predicted)
    names = {key: list(_group_streams(key, torch.zeros(1, c, 1), key in split, key in predicted)) for key, (_, c, _) in shapes.items()}
    ordered = [n for group in names.values() for n in group]
    total = sum(math.prod(s) for s in shapes.values()) + len(ordered)
    streams = decode_symbols(data, max_symbols=total, what=what)
    if list(streams) != [*ordered, "h"] or len(streams["h"]) != len(ordered):
        raise bad("its streams are not the ones its header implies")
    half = dict(zip(ordered, streams["h"].tolist()))
    out: dict[str, Tensor] = {}
    for key, (t, c, k) in shapes.items():
        parts = []
        for name in names[key]:
            h, values = half[name], streams[name]
            width = c if len(names[key]) == 1 else 1
            if h > bound or values.size != t * width * k or (values.size and values.max() > 2 * h):
                raise bad(f"stream {name!r} does not fit its declared size or range")
            parts.append(torch.from_numpy(values - h).reshape(t, width, k))
        block = torch.cat(parts, dim=1)
        if key in predicted:
            block = grids[key].reconstruct(block)
            if block.numel() and block.abs().max() > max_symbol:
                raise bad(f"group {key!r} decodes to values outside [-{max_symbol}, {max_symbol}]")
        out[key] = block
    return out


def latent_container(
    codec: str, modality: str, created_by: dict[str, str], model: dict[str, str], fields: Mapping[str, Any],
    coded: tuple[bytes, list[str], list[str]], max_symbol: int, solver: Mapping[str, Any],
) -> Container:
    """A learned codec's container: what :func:`read_latent_payload` checks (the quantiser, ``split``,
    ``predicted`` when any, the solver settings, the bytes as tensor ``streams``), the codec, modality,
    makers and model reference, and the codec's own ``fields`` (the signal's and the latents' shapes).
    ``coded``: what :func:`encode_latent_groups` returned, its group names as the header gives them."""
    data, split, predicted = coded
    header = {
        "codec": codec,
        "modality": modality,
        "created_by": created_by,
        "model": model,
        **fields,
        "quantiser": {"kind": "integer", "max_symbol": max_symbol},
        "split": split,
        **({"predicted": predicted} if predicted else {}),
        "solver": dict(solver),
    }
    return Container(header, {"streams": as_tensor(data)})


@dataclass(frozen=True)
class LatentPayload:
    """What :func:`read_latent_payload` validated: the coded bytes and how to decode them."""

    data: bytes
    split: list[str]
    predicted: list[str]
    solver: dict[str, Any]


def read_latent_payload(container: Container, codec: str, max_symbol: int, groups: Collection[str]) -> LatentPayload:
    """Check the header fields every learned codec writes beside :func:`encode_latent_groups`' bytes:
    the quantiser, the groups coded per channel (``split``) and as residuals (``predicted``, absent
    in files from before prediction), the solver settings ``{tol, max_iter}``, the one tensor.

    ``groups``: the group names the model allows in ``split`` and ``predicted``; every malformation
    is a one-line :class:`CollagekitError` naming the file as corrupt.
    """

    def bad(why: str) -> CollagekitError:
        return CollagekitError(f"corrupt .clg file: {why}")

    if container.require("quantiser") != {"kind": "integer", "max_symbol": max_symbol}:
        raise bad("the quantiser description does not fit the model")

    def group_list(value: Any, what: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(g, str) for g in value) or not set(value) <= set(groups) or len(set(value)) != len(value):
            raise bad(f"its list of {what} groups is malformed")
        return value

    split = group_list(container.require("split"), "per-channel")
    predicted = group_list(container.header.get("predicted", []), "predicted")
    solver = container.require("solver")
    if not (isinstance(solver, dict) and isinstance(solver.get("tol"), (int, float)) and isinstance(solver.get("max_iter"), int)
            and solver["tol"] > 0 and 1 <= solver["max_iter"] <= 10_000):
        raise bad("the solver settings are malformed")
    if set(container.tensors) != {"streams"}:
        raise bad(f"a {codec} file holds one tensor 'streams', found {sorted(container.tensors)}")
    data = from_tensor(container.tensors["streams"], f"{codec} streams")
    return LatentPayload(data, split, predicted, {"tol": float(solver["tol"]), "max_iter": solver["max_iter"]})
