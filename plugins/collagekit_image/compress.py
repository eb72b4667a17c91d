"""``task: image_compress``: compress an image with a Neural Collage model, save the .clg, decode the
saved file, and report bpp, PSNR and timings (metrics JSON in CompressAI's results shape)."""

from __future__ import annotations

from typing import Any

from collagekit.container import from_bytes, to_bytes
from collagekit.fileio import outputs_together
from collagekit.metrics import bits_per_element, psnr, write_metrics
from collagekit.modality import DEFAULT_MAX_ELEMENTS
from collagekit.tasks import Task
from collagekit.timing import median_time
from collagekit_image.config import ImageCompressConfig


def compressai_results(name: str, description: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """CompressAI's results JSON shape: ``{"name", "description", "results": {metric: [one per point]}}``."""
    keys = {"psnr-rgb": "psnr_db", "bpp": "bpp", "encoding_time": "encode_seconds", "decoding_time": "decode_seconds"}
    return {"name": name, "description": description, "results": {k: [r[v] for r in rows] for k, v in keys.items()}}


class ImageCompress(Task):
    Config = ImageCompressConfig

    config: Config

    def run(self) -> dict[str, Any]:
        from collagekit_image.imageio import IMAGE
        from collagekit_image.ncodec import NeuralCollageCodec, decode_latents, read_code
        from collagekit_image.tasks import sample_image

        cfg, device = self.config, self.ctx.device
        source, output, code_path = cfg.paths(IMAGE.suffixes, sample_image, self.ctx)
        x = IMAGE.load(source, DEFAULT_MAX_ELEMENTS)
        options: dict[str, Any] = {"max_pixels": cfg.max_pixels}
        if cfg.model:
            options["model"] = cfg.model
        codec = NeuralCollageCodec()
        # Untimed warm-up of both directions: first calls pay one-time costs (allocator, lazy imports).
        warm = codec.encode(x[..., :64, :64], self.ctx.registry, quality=cfg.quality, device=device, options=options)
        codec.decode(warm, self.ctx.registry, scale=1, device=device, options={"model": cfg.model} if cfg.model else {})
        encoded = median_time(lambda: codec.encode(x, self.ctx.registry, quality=cfg.quality, device=device, options=options), 1, device)
        code = to_bytes(encoded.result)
        size = len(code)

        def decode() -> tuple[Any, ...]:
            # What the code file decodes to, timing the whole decode (entropy decoding + solve).
            loaded, latents, info = read_code(from_bytes(code, str(code_path)), cfg.model)
            return loaded, latents, info, decode_latents(loaded.model, latents, info["channels"], info["spatial"], 1, device, **info["solver"]).clamp(0, 1)

        timed = median_time(decode, 1, device)
        loaded, latents, info, decoded = timed.result
        encode_seconds, decode_seconds = encoded.seconds, timed.seconds
        if cfg.scale != 1:
            decoded_big = decode_latents(loaded.model, latents, info["channels"], info["spatial"], cfg.scale, device, **info["solver"]).clamp(0, 1)
        else:
            decoded_big = decoded
        pixels = x.shape[2] * x.shape[3]
        planes = {"luma": loaded.model.luma, "chroma": loaded.model.chroma}
        bound = max(float(planes[n].collage.lipschitz_bound(planes[n].params(q.float())).max()) for n, q in latents.items())
        metrics = {
            "input": str(source),
            "output": str(output),
            "code": str(code_path),
            "model": loaded.name,
            "code_bytes": size,
            "shape": list(x.shape[1:]),
            "bpp": round(bits_per_element(size, pixels), 4),
            "psnr_db": round(psnr(x, decoded.cpu()), 3),
            "lipschitz_bound": round(bound, 4),
            "encode_seconds": round(encode_seconds, 3),
            "decode_seconds": round(decode_seconds, 3),
            "scale": cfg.scale,
            **self.ctx.conditions(),
        }
        with outputs_together() as stage:
            IMAGE.save(decoded_big.cpu(), stage(output))
            stage(code_path).write_bytes(code)
            if cfg.metrics:
                results = compressai_results(f"neural-collage-{loaded.name}", f"collagekit image_compress of {source.name}", [metrics])
                write_metrics(stage(cfg.metrics), results | {"image": metrics})
        return metrics

