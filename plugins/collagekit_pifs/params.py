"""The settings a PIFS code depends on (stored in the ``.clg`` header) and its scalar quantisers.

Contrast ``s`` is quantised on a symmetric lattice ``q * s_max / Z``, ``q = -Z .. Z`` with
``Z = 2**(s_bits-1) - 1``: 0 is exact (flat blocks need no domain) and every code has ``|s| <= s_max < 1``,
so every decodable code is a contraction in the sup norm (pooling and the transforms are non-expansive).
Brightness ``o`` is quantised over the interval that keeps ``s * D + o`` inside [0, 1] for D in [0, 1]
(Fisher's normalisation): ``[-max(s, 0), 1 + max(-s, 0)]``, width ``1 + |s|``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

from collagekit.codec import dequantize, quantize
from collagekit.errors import CollagekitError


@dataclass(frozen=True)
class PifsParams:
    max_range: int = 16  # largest range block (top of the quadtree), pixels
    min_range: int = 4  # smallest range block
    domain_stride: int = 1  # domain lattice step, in units of the range size (2: non-overlapping domains)
    s_bits: int = 4  # 15 contrast levels; 5 bits cost more than they return at <= 1 bpp
    o_bits: int = 6
    s_max: float = 0.95

    def __post_init__(self) -> None:
        def power_of_two(v: int) -> bool:
            return isinstance(v, int) and v >= 2 and v & (v - 1) == 0

        if not (power_of_two(self.min_range) and power_of_two(self.max_range) and self.min_range <= self.max_range <= 256):
            raise CollagekitError(
                f"PIFS range sizes must be powers of two with 2 <= min_range <= max_range <= 256, got {self.min_range} and {self.max_range}"
            )
        if not (isinstance(self.domain_stride, int) and 1 <= self.domain_stride <= 8):
            raise CollagekitError(f"PIFS domain_stride must be an integer in [1, 8], got {self.domain_stride!r}")
        if not (isinstance(self.s_bits, int) and 2 <= self.s_bits <= 8 and isinstance(self.o_bits, int) and 2 <= self.o_bits <= 12):
            raise CollagekitError(f"PIFS needs 2 <= s_bits <= 8 and 2 <= o_bits <= 12, got {self.s_bits} and {self.o_bits}")
        if not (isinstance(self.s_max, float) and 0.0 < self.s_max < 1.0):
            raise CollagekitError(f"PIFS s_max must lie in (0, 1) for a contraction, got {self.s_max!r}")

    # ------------------------------------------------------------ geometry
    def sizes(self) -> list[int]:
        """Range sizes from the top of the quadtree down: [max_range, max_range/2, ..., min_range]."""
        sizes, r = [], self.max_range
        while r >= self.min_range:
            sizes.append(r)
            r //= 2
        return sizes

    def stride(self, r: int) -> int:
        """Domain lattice step (pixels, even) for range size r."""
        return self.domain_stride * r

    def domain_grid(self, r: int, padded: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of 2r x 2r domain blocks at this level; (0, 0) if the image is too small."""
        h, w = padded
        if h < 2 * r or w < 2 * r:
            return 0, 0
        st = self.stride(r)
        return (h - 2 * r) // st + 1, (w - 2 * r) // st + 1

    # ------------------------------------------------------------ quantisers
    @property
    def s_zero(self) -> int:
        """Code of s = 0 (and Z, the number of steps on each side)."""
        return 2 ** (self.s_bits - 1) - 1

    @property
    def s_levels(self) -> int:
        return 2 * self.s_zero + 1

    @property
    def s_step(self) -> float:
        return self.s_max / self.s_zero

    @property
    def o_levels(self) -> int:
        return 2**self.o_bits

    def s_code(self, s: Tensor) -> Tensor:
        return quantize(s, -self.s_max, self.s_max, self.s_levels)

    def s_value(self, q: Tensor) -> Tensor:
        # The clamp only removes float32 rounding above s_max: |s| <= s_max holds exactly.
        return ((q - self.s_zero).float() * self.s_step).clamp(-self.s_max, self.s_max)

    def _o_interval(self, s: Tensor) -> tuple[Tensor, Tensor]:
        lo = -s.clamp_min(0)
        return lo, lo + 1.0 + s.abs()

    def o_code(self, o: Tensor, s: Tensor) -> Tensor:
        lo, hi = self._o_interval(s)
        return quantize(o, lo, hi, self.o_levels)

    def o_value(self, q: Tensor, s: Tensor) -> Tensor:
        lo, hi = self._o_interval(s)
        return dequantize(q, lo, hi, self.o_levels)

    # ------------------------------------------------------------ header
    def to_header(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_header(cls, data: Any) -> PifsParams:
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise CollagekitError("corrupt .clg file: the PIFS parameters are missing or malformed")
        try:
            return cls(**data)
        except CollagekitError as exc:
            raise CollagekitError(f"corrupt .clg file: {exc}") from None

