"""``vae_mnist``: train a Collage VAE (or the conv baseline) on MNIST, score it on the test images, save it.

``collagekit run recipes/vae_mnist.yaml beta=0.7 model.decoder=conv output=outputs/vae_conv``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from collagekit.bench import default_data_root
from collagekit.fileio import atomic_output
from collagekit.tasks import Task, TaskConfig
from collagekit.training import TrainingConfig
from collagekit_vae.model import VAEConfig


class VAEMnist(Task):
    class Config(TaskConfig):
        task: Literal["vae_mnist"] = "vae_mnist"
        data: str | None = Field(None, description="folder with the MNIST IDX files (default: ../shared/data/mnist)")
        output: str = Field("outputs/vae_mnist", description="folder for checkpoints, model.safetensors and metrics.json")
        train_count: int = Field(9000, ge=1, description="the first images of the file train, the rest test")
        beta: float = Field(1.0, gt=0, le=100, description="weight of the rate (KL) in the training loss")
        kl_warmup_steps: int = Field(0, ge=0, description="ramp the KL weight up linearly to beta over this many steps (0: none)")
        model: VAEConfig = Field(default_factory=dict, validate_default=True)
        training: TrainingConfig = Field(
            default_factory=lambda: TrainingConfig(steps=1500, batch_size=64, lr=2e-3, warmup_steps=50, grad_clip=5.0,
                                                   checkpoint_every=250, log_every=50)
        )  # fmt: skip
        eval_samples: int = Field(1, ge=1, le=100, description="posterior samples per test image in the reported ELBO")

    config: Config

    def run(self) -> dict[str, Any]:
        from collagekit.training import train
        from collagekit_vae.evaluate import evaluate
        from collagekit_vae.mnist import BatchStream, fixed_binarization, split
        from collagekit_vae.model import VAEObjective, build_model, count_parameters
        from collagekit_vae.store import save_model

        cfg, device = self.config, self.ctx.device
        folder = Path(cfg.data) if cfg.data else default_data_root() / "mnist"
        train_images, test_images = split(folder, cfg.train_count)
        out = Path(cfg.output)
        model = build_model(cfg.model, self.ctx.registry)
        objective = VAEObjective(model, cfg.beta, cfg.kl_warmup_steps)
        stream = BatchStream(train_images, cfg.training.batch_size, cfg.training.seed)
        result = train(objective, stream, cfg.training, out_dir=out / "checkpoint", device=device,
                       description=f"{cfg.model.decoder} VAE, beta {cfg.beta:g}")  # fmt: skip
        scores = evaluate(model, fixed_binarization(test_images), samples=cfg.eval_samples)
        metrics: dict[str, Any] = {
            "decoder": cfg.model.decoder,
            "beta": cfg.beta,
            "parameters": count_parameters(model),
            "steps": result.steps,
            "test_images": len(test_images),
            "train_seconds": round(result.seconds, 1),
            "device": str(device),
            **{f"test_{k}_nats": round(v, 3) for k, v in scores.items()},
        }
        save_model(model, out / "model.safetensors", beta=cfg.beta, metrics=metrics, created_by=self.ctx.versions())
        with atomic_output(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps({**metrics, "history": result.history}, indent=1) + "\n")
        return {**metrics, "model": str(out / "model.safetensors")}
