"""What the PIFS plugin declares before anything runs: the ``pifs_compress`` task's Config, the codec's
options and the benchmark. Imports no torch (see :mod:`collagekit.lazy`)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from collagekit.bench import Benchmark
from collagekit.config import Options
from collagekit.lazy import Lazy
from collagekit.tasks import FileTaskConfig

Search = Literal["exhaustive", "oriented", "classified", "classified-full", "nearest"]
DEFAULT_SEARCH = "nearest"  # as good as exhaustive to ~0.06 dB at >10x the speed (docs/results/pifs.md)
DEFAULT_SIZE_EXPONENT = -0.75  # bigger blocks get a stricter target: measured +0.4 dB at 0.5 bpp on Kodak


class PifsEncodeOptions(Options):
    rms: float | None = Field(None, gt=0, description="RMS error target of the smallest blocks, 8-bit levels (default: from --quality)")
    size_exponent: float = Field(DEFAULT_SIZE_EXPONENT, ge=-2, le=2, description="a block of size r gets rms * (r / min_range) ** size_exponent")
    search: Search = Field(DEFAULT_SEARCH, description="domain search")
    colour: Literal["ycbcr", "rgb"] = Field("ycbcr", description="colour images: luma/chroma or per RGB channel")
    chroma: float = Field(2.0, gt=0, description="chroma RMS target as a multiple of the luma one")
    max_range: int = Field(16, description="largest range block (power of two)")
    min_range: int = Field(4, description="smallest range block (power of two)")
    domain_stride: int = Field(1, description="domain lattice step in range sizes, 1 to 8")
    s_bits: int = Field(4, description="contrast bits, 2 to 8")
    o_bits: int = Field(6, description="brightness bits, 2 to 12")
    s_max: float = Field(0.95, description="largest |contrast|: the contraction bound, in (0, 1)")


class PifsDecodeOptions(Options):
    solver: Literal["anderson", "picard"] | None = Field(None, description="fixed-point method (default: the file's)")
    tol: float | None = Field(None, gt=0, description="fixed-point tolerance (default: the file's)")
    max_iter: int | None = Field(None, ge=1, le=100_000, description="most fixed-point iterations (default: the file's)")


class PifsCompressConfig(FileTaskConfig):
    task: Literal["pifs_compress"] = "pifs_compress"
    input: str | None = Field(None, description="image to compress (default: the sample shipped with collagekit_image)")
    output: str = Field("pifs.png", description="the decoded image (PNG keeps it lossless)")
    quality: int = Field(50, ge=0, le=100, description="0..100: RMS target 64 grey levels at 0, halving every 20")
    rms: float | None = Field(None, gt=0, description="RMS error target of the smallest blocks (8-bit levels); overrides quality")
    size_exponent: float = Field(DEFAULT_SIZE_EXPONENT, ge=-2, le=2, description="a block of size r gets rms * (r / min_range) ** size_exponent")
    search: Search = Field(DEFAULT_SEARCH, description="domain search")
    colour: Literal["ycbcr", "rgb"] = Field("ycbcr", description="colour images: luma/chroma or per RGB channel")
    chroma: float = Field(2.0, gt=0, description="chroma RMS target as a multiple of the luma one")
    max_range: int = Field(16, description="largest range block (power of two)")
    min_range: int = Field(4, description="smallest range block (power of two)")
    domain_stride: int = Field(1, ge=1, le=8, description="domain lattice step in range sizes")
    s_bits: int = Field(4, ge=2, le=8, description="contrast bits")
    o_bits: int = Field(6, ge=2, le=12, description="brightness bits")
    s_max: float = Field(0.95, gt=0, lt=1, description="largest |contrast|: the contraction bound")
    scale: int = Field(1, ge=1, le=64, description="decode the output at this integer scale")


class PifsBenchOptions(Options):
    """Also: max_range, min_range, domain_stride, s_max, s_bits, o_bits, size_exponent, chroma (PIFS settings)."""

    model_config = ConfigDict(extra="allow")
    repeats: int = Field(3, ge=1, description="timed runs per image and rate (the median is reported)")
    limit: int = Field(24, ge=1, description="at most N images of each set")
    searches: str = Field("exhaustive,classified,nearest", description="comma-separated domain searches to compare")
    colour: bool = Field(True, description="also code the colour Kodak images (with the last search)")


PIFS_BENCH = Benchmark(
    name="pifs",
    description="PIFS on Kodak: bpp, PSNR at 0.5 bpp, encode/decode time, exhaustive vs classified vs nearest search, JPEG",
    run=Lazy("collagekit_pifs.bench:run"),
    default_data="kodak",
    options=PifsBenchOptions,
)
