"""The Neural Collage image model (paper sections 3.2 and 4.2): a convolutional hypernetwork that maps
each image tile to that tile's collage parameters in one forward pass, quantised to integers and
priced by a learned factorised prior.

An image is coded as planes: luma at full resolution and, for colour, the two chroma planes at half
resolution (decoded at 2x through the collage's own resolution independence: no separate upsampler).
Every plane is cut into ``tile x tile`` tiles, each an independent collage signal of one channel
(``tiles2d`` ranges and domains inside the tile, plus dataset-level learned patches). All tiles of an
image go through the encoder and the fixed-point solver as one batch.

Shapes: ``t`` tiles, ``p`` latent channels per range cell (the raw parameters of one range), ``k``
range cells per tile, ``T`` the tile size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from collagekit.colour import rgb_to_ycbcr, ycbcr_to_rgb
from collagekit.grid import AveragePooler, LearnedPatches
from collagekit.hypercollage import HyperCollage
from collagekit.operator import GridCollage
from collagekit_image.components import Dihedral, ImageTiles
from collagekit_image.config import ModelConfig, PlaneConfig


class HyperEncoder(nn.Module):
    """Conv hypernetwork: a tile (t 1 T T) -> raw latents (t p k), one p-vector per range cell.

    ``downsample`` stride-2 stages bring the tile to one feature vector per range cell; the tile's
    mean feature is appended to each, so every range sees the whole tile (its domains live anywhere in
    it). One forward pass encodes every tile of an image (paper section 3.2).
    """

    def __init__(self, outputs: int, width: int = 64, downsample: int = 3, channels: int = 1) -> None:
        super().__init__()
        # The first stage reads the pixels with a strided conv: full-resolution feature maps would
        # cost most of the encode time on a CPU for little gain.
        layers: list[nn.Module] = []
        for i in range(downsample):
            layers += [nn.Conv2d(channels if i == 0 else width, width, 3, stride=2, padding=1), nn.GELU()]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 1), nn.GELU(), nn.Conv2d(2 * width, outputs, 1))

    def forward(self, tiles: Tensor) -> Tensor:
        """(t c T T) centred values -> (t p k) latents in quantisation units."""
        f = self.body(tiles)
        f = torch.cat([f, f.mean((2, 3), keepdim=True).expand_as(f)], dim=1)
        return self.head(f).flatten(2)


class Plane(HyperCollage):
    """One plane's collage over a tile (with its learned patches), hypernetwork, quantiser gains and prior."""

    def __init__(self, cfg: PlaneConfig) -> None:
        partitioner = ImageTiles(range_size=cfg.range_size, domain_size=cfg.domain_size, domain_stride=cfg.domain_stride)
        aux = [Dihedral()] if cfg.dihedral else []
        collage = GridCollage(partitioner, AveragePooler(), [*aux, LearnedPatches(count=cfg.patches, init_std=0.1)], cfg.contraction)
        downsample = int(math.log2(cfg.range_size))
        # One unit must already change the decoded tile visibly: a weight whose codes all round to zero
        # gets no gradient through its gain, and small gains left the patches and domains unused.
        super().__init__(
            collage,
            (cfg.tile, cfg.tile),
            lambda outputs: HyperEncoder(outputs=outputs, width=cfg.width, downsample=downsample),
            {"scale": 0.5, "mix": 1.0, "aux": 0.5, "bias": 1 / 64},
        )
        self.cfg = cfg
        with torch.no_grad():  # biases spread over tens of steps: start their prior wide (b = 8)
            self.prior.log_scale[-1] = math.log(8.0) / self.prior.SPEED


# ---------------------------------------------------------------- planes <-> tiles
def to_tiles(plane: Tensor, tile: int) -> Tensor:
    """(b 1 H W), H and W multiples of ``tile`` -> (t 1 tile tile), t = b (H/tile) (W/tile), row-major."""
    return rearrange(plane, "b c (h th) (w tw) -> (b h w) c th tw", th=tile, tw=tile)


def from_tiles(tiles: Tensor, batch: int, grid: tuple[int, int]) -> Tensor:
    """(t 1 s s) -> (b 1 gh*s gw*s): the inverse of :func:`to_tiles`."""
    return rearrange(tiles, "(b h w) c th tw -> b c (h th) (w tw)", b=batch, h=grid[0], w=grid[1])


def pad_unit(cfg: ModelConfig) -> int:
    """Images are padded (never cropped) to multiples of this: whole luma and half-resolution chroma tiles."""
    return math.lcm(cfg.luma.tile, 2 * cfg.chroma.tile)


@dataclass
class Layout:
    """Geometry of one image under a model: padded size, tile grids of the luma and chroma planes."""

    spatial: tuple[int, int]
    padded: tuple[int, int]
    luma_grid: tuple[int, int]
    chroma_grid: tuple[int, int]

    @classmethod
    def of(cls, spatial: tuple[int, int], cfg: ModelConfig) -> Layout:
        unit = pad_unit(cfg)
        padded = tuple(math.ceil(s / unit) * unit for s in spatial)
        return cls(
            spatial=tuple(spatial),
            padded=padded,
            luma_grid=(padded[0] // cfg.luma.tile, padded[1] // cfg.luma.tile),
            chroma_grid=(padded[0] // (2 * cfg.chroma.tile), padded[1] // (2 * cfg.chroma.tile)),
        )

    @property
    def luma_tiles(self) -> int:
        return self.luma_grid[0] * self.luma_grid[1]

    @property
    def chroma_tiles(self) -> int:
        return 2 * self.chroma_grid[0] * self.chroma_grid[1]


class NeuralCollageModel(nn.Module):
    """Luma and chroma planes. Images are (b c h w) in [0, 1], c = 1 (grey) or 3 (RGB, coded as YCbCr)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.luma = Plane(cfg.luma)
        self.chroma = Plane(cfg.chroma)

    def planes(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(b c H W) padded image -> centred luma tiles (t 1 T T) and chroma tiles (t' 1 T T) or None.

        Chroma tiles are ordered Cb-major: all Cb tiles of every image, then all Cr tiles.
        """
        if x.shape[1] == 1:
            return to_tiles(x - 0.5, self.cfg.luma.tile), None
        ycc = rgb_to_ycbcr(x) - 0.5
        chroma = F.avg_pool2d(ycc[:, 1:], 2)
        chroma = rearrange(chroma, "b c h w -> (c b) 1 h w")
        return to_tiles(ycc[:, :1], self.cfg.luma.tile), to_tiles(chroma, self.cfg.chroma.tile)

    def assemble(self, luma: Tensor, chroma: Tensor | None, batch: int, layout: Layout, scale: int) -> Tensor:
        """Decoded tiles -> (b c H*scale W*scale) in RGB (not clipped), cropped to the image size."""
        return self.to_image(self.stitch(luma, chroma, batch, layout), layout, scale)

    def stitch(self, luma: Tensor, chroma: Tensor | None, batch: int, layout: Layout) -> Tensor:
        """Decoded tiles -> the padded planes (b c H' W'): luma, or YCbCr in [0, 1] units."""
        y = from_tiles(luma, batch, layout.luma_grid) + 0.5
        if chroma is None:
            return y
        c = from_tiles(chroma, 2 * batch, layout.chroma_grid)
        return torch.cat([y, rearrange(c, "(c b) 1 h w -> b c h w", c=2) + 0.5], dim=1)

    def to_image(self, planes: Tensor, layout: Layout, scale: int) -> Tensor:
        """Stitched planes -> (b c H*scale W*scale) in RGB (not clipped), cropped to the image size."""
        if planes.shape[1] == 3:
            planes = ycbcr_to_rgb(planes)
        h, w = layout.spatial
        return planes[..., : h * scale, : w * scale]

    def borders(self, channel: int) -> tuple[int, int]:
        """(range cell, tile) size in full-resolution samples of a stitched plane's channel (chroma is
        coded at half resolution and decoded at 2x, so its borders lie twice as far apart)."""
        plane, factor = (self.cfg.luma, 1) if channel == 0 else (self.cfg.chroma, 2)
        return plane.range_size * factor, plane.tile * factor


def pad_image(x: Tensor, layout: Layout) -> Tensor:
    """(b c h w) -> (b c H W) by edge replication."""
    h, w = layout.spatial
    H, W = layout.padded
    if (H, W) == (h, w):
        return x
    return F.pad(x, (0, W - w, 0, H - h), mode="replicate")
