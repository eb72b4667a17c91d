"""``vae_mnist``: train a Collage VAE (or the conv baseline) on MNIST, score it on the held-out images
(the validation images unless ``split=test``), save it.

``collagekit run vae_mnist beta=0.7 model.decoder=conv output=outputs/vae_conv``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collagekit.bench import data_folder
from collagekit.fileio import outputs_together
from collagekit.tasks import Task
from collagekit_vae.config import VAEMnistConfig


class VAEMnist(Task):
    Config = VAEMnistConfig

    config: Config

    def run(self) -> dict[str, Any]:
        from collagekit.training import train
        from collagekit_vae.evaluate import evaluate
        from collagekit_vae.mnist import BatchStream, fixed_binarization, split
        from collagekit_vae.model import VAEObjective, build_model, count_parameters
        from collagekit_vae.store import save_model

        cfg, device = self.config, self.ctx.device
        out = Path(cfg.output)
        # The output folder is the run's working folder (checkpoints: a rerun resumes there); the model is the user's file.
        self.ctx.check_outputs([], [out / "model.safetensors"])
        parts = split(data_folder(cfg.data, "mnist", "task vae_mnist", "data=DIR"), cfg.train_count, cfg.validation_count)
        # Only the named held-out set is scored: choices made on a run's metrics are made on validation images.
        held_out = parts.validation if cfg.split == "validation" else parts.test
        model = build_model(cfg.model, self.ctx.registry)
        objective = VAEObjective(model, cfg.beta, cfg.kl_warmup_steps)
        stream = BatchStream(parts.train, cfg.training.batch_size, cfg.training.seed)
        result = train(objective, stream, cfg.training, out_dir=out / "checkpoint", device=device,
                       description=f"{cfg.model.decoder} VAE, beta {cfg.beta:g}")  # fmt: skip
        scores = evaluate(model, fixed_binarization(held_out), samples=cfg.eval_samples)
        metrics: dict[str, Any] = {
            "decoder": cfg.model.decoder,
            "beta": cfg.beta,
            "parameters": count_parameters(model),
            "steps": result.steps,
            "train_images": len(parts.train),
            "scored_on": cfg.split,
            f"{cfg.split}_images": len(held_out),
            "train_seconds": round(result.seconds, 1),
            **self.ctx.conditions(),
            **{f"{cfg.split}_{k}_nats": round(v, 3) for k, v in scores.items()},
        }
        with outputs_together() as stage:
            save_model(model, stage(out / "model.safetensors"), beta=cfg.beta, metrics=metrics, created_by=self.ctx.versions())
            stage(out / "metrics.json").write_text(json.dumps({**metrics, "history": result.history}, indent=1) + "\n")
        return {**metrics, "model": str(out / "model.safetensors")}
