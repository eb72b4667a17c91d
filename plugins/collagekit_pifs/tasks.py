"""``task: pifs_compress``: compress an image with PIFS, save the .clg, decode the saved file, report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from collagekit.container import read_container, write_container
from collagekit.metrics import bits_per_element, psnr, write_metrics
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.tasks import FileTaskConfig, Task
from collagekit.timing import median_time


class PifsCompress(Task):
    class Config(FileTaskConfig):
        task: Literal["pifs_compress"] = "pifs_compress"
        input: str | None = Field(None, description="image to compress (default: the sample shipped with collagekit_image)")
        output: str = Field("pifs.png", description="the decoded image (PNG keeps it lossless)")
        quality: int = Field(50, ge=0, le=100, description="0..100: RMS target 64 grey levels at 0, halving every 20")
        rms: float | None = Field(None, gt=0, description="RMS error target of the smallest blocks (8-bit levels); overrides quality")
        size_exponent: float = Field(-0.75, ge=-2, le=2, description="a block of size r gets rms * (r / min_range) ** size_exponent")
        search: Literal["exhaustive", "oriented", "classified", "classified-full", "nearest"] = Field("nearest", description="domain search")
        colour: Literal["ycbcr", "rgb"] = Field("ycbcr", description="colour images: luma/chroma or per RGB channel")
        chroma: float = Field(2.0, gt=0, description="chroma RMS target as a multiple of the luma one")
        max_range: int = Field(16, description="largest range block (power of two)")
        min_range: int = Field(4, description="smallest range block (power of two)")
        domain_stride: int = Field(1, ge=1, le=8, description="domain lattice step in range sizes")
        s_bits: int = Field(4, ge=2, le=8, description="contrast bits")
        o_bits: int = Field(6, ge=2, le=12, description="brightness bits")
        s_max: float = Field(0.95, gt=0, lt=1, description="largest |contrast|: the contraction bound")
        scale: int = Field(1, ge=1, le=64, description="decode the output at this integer scale")

    config: Config

    def run(self) -> dict[str, Any]:
        from collagekit_image.imageio import IMAGE
        from collagekit_image.tasks import sample_image
        from collagekit_pifs.pifscodec import PifsCodec, contraction_bound, decode_image, read_code

        cfg, device = self.config, self.ctx.device
        source, output, code_path = cfg.paths(IMAGE.suffixes, sample_image)
        x = IMAGE.load(source, DEFAULT_MAX_ELEMENTS)
        options: dict[str, Any] = {
            key: getattr(cfg, key)
            for key in ("search", "size_exponent", "colour", "chroma", "max_range", "min_range", "domain_stride", "s_bits", "o_bits", "s_max")
        }
        if cfg.rms is not None:
            options["rms"] = cfg.rms
        codec = PifsCodec()
        encoded = median_time(lambda: codec.encode(x, self.ctx.registry, quality=cfg.quality, device=device, options=options), 1, device)
        container, encode_seconds = encoded.result, encoded.seconds
        size = write_container(code_path, container)
        # Report what the saved file decodes to.
        codes, params, info = read_code(read_container(code_path))
        timed = median_time(lambda: decode_image(codes, params, info, 1, device, **info["solver"]), 1, device)
        (decoded, stats), decode_seconds = timed.result, timed.seconds
        big = decoded if cfg.scale == 1 else decode_image(codes, params, info, cfg.scale, device, **info["solver"])[0]
        IMAGE.save(big.cpu(), output)
        metrics = {
            "input": str(source),
            "output": str(output),
            "code": str(code_path),
            "code_bytes": size,
            "shape": list(x.shape[1:]),
            "bpp": round(bits_per_element(size, x.shape[2] * x.shape[3]), 4),
            "psnr_db": round(psnr(x, decoded), 3),
            "lipschitz_bound": round(contraction_bound(codes, params, info), 4),
            "solver_iterations": stats.iterations,
            "encode_seconds": round(encode_seconds, 3),
            "decode_seconds": round(decode_seconds, 4),
            "scale": cfg.scale,
            "device": str(device),
        }
        if cfg.metrics:
            write_metrics(cfg.metrics, metrics)
        return metrics
