"""``task: pifs_compress``: compress an image with PIFS, save the .clg, decode the saved file, report."""

from __future__ import annotations

from typing import Any

from collagekit.container import from_bytes, to_bytes
from collagekit.fileio import outputs_together
from collagekit.metrics import bits_per_element, psnr, write_metrics
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.tasks import Task
from collagekit.timing import median_time
from collagekit_pifs.config import PifsCompressConfig


class PifsCompress(Task):
    Config = PifsCompressConfig

    config: Config

    def run(self) -> dict[str, Any]:
        from collagekit_image.imageio import IMAGE
        from collagekit_image.tasks import sample_image
        from collagekit_pifs.pifscodec import PifsCodec, contraction_bound, decode_image, read_code

        cfg, device = self.config, self.ctx.device
        source, output, code_path = cfg.paths(IMAGE.suffixes, sample_image, self.ctx)
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
        code = to_bytes(container)
        size = len(code)
        # Report what the code file decodes to.
        codes, params, info = read_code(from_bytes(code, str(code_path)))
        timed = median_time(lambda: decode_image(codes, params, info, 1, device, **info["solver"]), 1, device)
        (decoded, stats), decode_seconds = timed.result, timed.seconds
        big = decoded if cfg.scale == 1 else decode_image(codes, params, info, cfg.scale, device, **info["solver"])[0]
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
            **self.ctx.conditions(),
        }
        with outputs_together() as stage:
            IMAGE.save(big.cpu(), stage(output))
            stage(code_path).write_bytes(code)
            if cfg.metrics:
                write_metrics(stage(cfg.metrics), metrics)
        return metrics
