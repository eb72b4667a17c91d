"""collagekit.codec: scalar quantisation and entropy coding of named integer streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from collagekit.codec import KIND_PRIOR, KIND_UNIFORM, StreamPrior, _choose_kind, as_tensor, decode_symbols, dequantize, encode_symbols, from_tensor, quantize
from collagekit.errors import CollagekitError

RNG = np.random.default_rng(0)
STREAMS = {
    "skewed": np.minimum(RNG.geometric(0.6, 5000) - 1, 30),  # categorical model pays off
    "wide": RNG.integers(0, 70_000, 300),  # beyond the table limit: uniform model
    "flat": RNG.integers(0, 8, 200),  # near-uniform: uniform model chosen
    "empty": np.zeros(0, dtype=np.int64),
    "constant": np.zeros(9, dtype=np.int64),  # one-symbol alphabet: no bits at all
}
ALPHABETS = {"skewed": 31, "wide": 70_000, "flat": 8, "empty": 5, "constant": 1}


def test_round_trip_is_exact_and_keeps_order() -> None:
    data = encode_symbols(STREAMS, ALPHABETS)
    decoded = decode_symbols(data, ALPHABETS)
    assert list(decoded) == list(STREAMS)
    for name, values in STREAMS.items():
        assert decoded[name].dtype == np.int64
        np.testing.assert_array_equal(decoded[name], values)


def test_accepts_tensors_and_round_trips_through_a_uint8_tensor() -> None:
    data = encode_symbols({"a": torch.tensor([3, 1, 4, 1, 5])}, {"a": 6})
    t = as_tensor(data)
    assert t.dtype == torch.uint8 and t.ndim == 1
    np.testing.assert_array_equal(decode_symbols(from_tensor(t))["a"], [3, 1, 4, 1, 5])
    with pytest.raises(CollagekitError, match="uint8"):
        from_tensor(t.float())


def test_a_skewed_source_compresses_below_its_raw_size() -> None:
    symbols = STREAMS["skewed"]
    raw_bytes = symbols.size * math.ceil(math.log2(31)) / 8
    size = len(encode_symbols({"s": symbols}, {"s": 31}))
    counts = np.bincount(symbols, minlength=31)
    p = counts[counts > 0] / symbols.size
    entropy_bytes = -(counts[counts > 0] * np.log2(p)).sum() / 8
    assert size < 0.6 * raw_bytes
    assert size < entropy_bytes + 120  # within the table and a few words of the entropy


def _skewed_prior(alphabet: int, strength: float = 32.0) -> StreamPrior:
    p = 0.6 * 0.4 ** np.arange(alphabet)  # the geometric law the "skewed" stream was drawn from
    return StreamPrior(p / p.sum(), strength)


def test_a_stream_with_a_fitting_prior_is_coded_adaptively_without_a_table() -> None:
    """A short stream whose table would cost more than its symbols (so it is coded uniformly without a
    prior): coded from the prior it is far smaller, the exact symbols come back, and the prior's estimate of its bits is what it costs."""
    symbols = STREAMS["skewed"][:60]
    prior = {"s": _skewed_prior(31)}
    with_prior = encode_symbols({"s": symbols}, {"s": 31}, prior)
    without = encode_symbols({"s": symbols}, {"s": 31})
    assert _choose_kind(symbols, 31, prior["s"])[0] == KIND_PRIOR and _choose_kind(symbols, 31, None)[0] == KIND_UNIFORM
    assert len(with_prior) < len(without) - 10
    np.testing.assert_array_equal(decode_symbols(with_prior, {"s": 31}, priors=prior)["s"], symbols)
    # Framing (magic, name, counts, word count, CRC) is ~17 bytes; the range coder adds at most a word.
    assert abs(len(with_prior) - 17 - prior["s"].bits(symbols) / 8) <= 6


def test_the_adaptive_model_follows_a_stream_its_prior_gets_wrong() -> None:
    """A prior that puts little mass where the stream lives still round-trips, and adaptation keeps the
    cost near the stream's own entropy instead of the prior's cross-entropy."""
    symbols = np.full(4000, 20)
    symbols[::7] = 21
    prior = _skewed_prior(31, strength=8.0)
    adaptive = prior.bits(symbols)
    static = -np.log2(prior.probabilities[symbols]).sum()
    assert adaptive < 0.1 * static
    data = encode_symbols({"s": symbols}, {"s": 31}, {"s": prior})
    np.testing.assert_array_equal(decode_symbols(data, priors={"s": prior})["s"], symbols)


def test_a_stream_coded_with_a_prior_needs_it_to_decode() -> None:
    symbols = STREAMS["skewed"][:60]
    prior = {"s": _skewed_prior(31)}
    data = encode_symbols({"s": symbols}, {"s": 31}, prior)
    with pytest.raises(CollagekitError, match="trained prior this decoder was not given"):
        decode_symbols(data, {"s": 31})
    with pytest.raises(CollagekitError, match="trained prior"):
        decode_symbols(data, {"s": 31}, priors={"s": _skewed_prior(30)})  # another alphabet
    with pytest.raises(ValueError, match="covers 30 symbols"):
        encode_symbols({"s": symbols}, {"s": 31}, {"s": _skewed_prior(30)})
    with pytest.raises(ValueError, match="positive probabilities"):
        StreamPrior(np.array([1.0, 0.0]), 1.0)


@pytest.mark.parametrize("position", [0, 5, 40, -30, -1])
def test_corrupted_bytes_raise(position: int) -> None:
    data = bytearray(encode_symbols(STREAMS, ALPHABETS))
    data[position] ^= 0x5A
    with pytest.raises(CollagekitError) as info:
        decode_symbols(bytes(data), ALPHABETS)
    assert "\n" not in str(info.value)


def test_truncated_and_foreign_bytes_raise() -> None:
    data = encode_symbols(STREAMS, ALPHABETS)
    for broken in (data[:-7], data[:3], b"", b"not a stream at all"):
        with pytest.raises(CollagekitError):
            decode_symbols(broken, ALPHABETS)


def test_unexpected_streams_and_limits_raise() -> None:
    data = encode_symbols(STREAMS, ALPHABETS)
    with pytest.raises(CollagekitError, match="not the expected"):
        decode_symbols(data, {**ALPHABETS, "skewed": 32})
    with pytest.raises(CollagekitError, match="too many|above its limit"):
        decode_symbols(data, max_symbols=1000)


def test_bad_symbols_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="symbols must lie"):
        encode_symbols({"a": np.array([0, 4])}, {"a": 4})
    with pytest.raises(ValueError, match="name different streams"):
        encode_symbols({"a": np.array([0])}, {"b": 4})


def test_quantise_dequantise() -> None:
    x = torch.linspace(-0.2, 1.2, 1001)
    q = quantize(x, 0.0, 1.0, 16)
    assert q.min() == 0 and q.max() == 15 and q.dtype == torch.int64
    y = dequantize(q, 0.0, 1.0, 16)
    inside = (x >= 0) & (x <= 1)
    assert (y[inside] - x[inside]).abs().max() <= 0.5 / 15 + 1e-6
    assert dequantize(torch.tensor([0, 15]), 0.0, 1.0, 16).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        quantize(x, 0.0, 1.0, 1)


def test_signed_streams_round_trip_any_spread_and_refuse_mismatched_streams() -> None:
    """Magnitude class + sign + low bits: exact for 0, +-1, powers of two and their neighbours up to
    2**25 - 1; a wide Gaussian costs close to its entropy (no table grows with the range); streams that
    do not agree with their classes are refused."""
    from collagekit.codec import MAX_CLASS, signed_from_streams, signed_streams

    edges = [0, 1, -1, 2, -3, 4, 7, 8, -8, (1 << MAX_CLASS) - 1, -(1 << (MAX_CLASS - 1)), (1 << (MAX_CLASS - 1)) - 1]
    noise = (torch.randn(20_000, generator=torch.Generator().manual_seed(3)) * 300).round().long()
    q = torch.cat([torch.tensor(edges), noise])
    streams, alphabets = signed_streams("b", q)
    data = encode_symbols(streams, alphabets)
    decoded = decode_symbols(data)
    assert torch.equal(signed_from_streams("b", decoded, q.numel(), "test"), q)
    entropy_bits = math.log2(300 * math.sqrt(2 * math.pi * math.e))  # a Gaussian's, per unit-step sample
    assert len(data) * 8 / q.numel() < entropy_bits + 0.6
    empty = decode_symbols(encode_symbols(*signed_streams("e", torch.zeros(0, dtype=torch.long))))
    assert signed_from_streams("e", empty, 0, "test").numel() == 0
    with pytest.raises(CollagekitError, match="holds"):
        signed_from_streams("b", decoded, q.numel() + 1, "test")
    short = dict(decoded, **{"b.m": decoded["b.m"][:-1]})
    with pytest.raises(CollagekitError, match="do not match"):
        signed_from_streams("b", short, q.numel(), "test")
    with pytest.raises(ValueError, match="magnitude"):
        signed_streams("b", torch.tensor([1 << MAX_CLASS]))


def test_stream_priors_with_unusable_values_are_refused() -> None:
    """A priors file's weights become the coder's distributions; NaN or an infinite strength (a damaged
    or hostile file) is one clear error, not a ValueError from deep inside the coder."""
    from collagekit.config import StreamPriorsConfig
    from collagekit.prior import StreamPriors

    priors = StreamPriors(StreamPriorsConfig(streams={"ab": 4, "cd": 2}))
    priors.start_from_counts({"ab": torch.tensor([5, 1, 0, 2])})
    good = priors.priors()
    assert good["ab"].probabilities.argmax() == 0 and abs(good["ab"].probabilities.sum() - 1) < 1e-12
    with torch.no_grad():
        priors.log_strength["cd"].fill_(1e4)  # exp overflows: an infinite strength
    with pytest.raises(CollagekitError, match="stream prior 'cd' has unusable values"):
        priors.priors()
    with torch.no_grad():
        priors.log_strength["cd"].fill_(0.0)
        priors.logits["ab"][0] = float("nan")
    with pytest.raises(CollagekitError, match="stream prior 'ab' has unusable values"):
        priors.priors()
