"""Test-set rate and distortion of a trained VAE, in nats per image (Alemi et al. 2018).

distortion = E_q[-log p(x | w)] (the Bernoulli NLL), rate = KL(q(z | x) || p(z)) + E_q KL(q(w | x, z) || p(w | z)),
ELBO = -(distortion + rate), each a Monte-Carlo mean over ``samples`` posterior draws per image, on one
fixed binarisation of the test images (:func:`collagekit_vae.mnist.fixed_binarization`), so every model is
scored on the same bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from collagekit_vae.model import HierarchicalVAE


@torch.no_grad()
def evaluate(model: HierarchicalVAE, x: Tensor, *, samples: int = 1, batch_size: int = 250, seed: int = 0) -> dict[str, float]:
    """x (n 1 28 28) in {0, 1} -> mean ``distortion``, ``rate`` (``kl_z`` + ``kl_w``) and ``elbo`` in nats per image."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    sums = {"distortion": 0.0, "kl_z": 0.0, "kl_w": 0.0}
    for _ in range(samples):
        for chunk in x.split(batch_size):
            t = model.terms(chunk.to(device))
            sums["distortion"] += float(t["nll"].sum())
            sums["kl_z"] += float(t["kl_z"].sum())
            sums["kl_w"] += float(t["kl_w"].sum())
    model.train(was_training)
    out = {k: v / (samples * len(x)) for k, v in sums.items()}
    out["rate"] = out["kl_z"] + out["kl_w"]
    out["elbo"] = -(out["distortion"] + out["rate"])
    return out
