"""A two-level VAE whose lower latent decodes through a grid collage's fixed point (paper section 4.1).

Generative model (top-down, as in VDVAE): ``z ~ N(0, I)`` a small global latent; ``w ~ p(w | z)`` a
per-range-cell latent, one Gaussian per cell and channel; ``x ~ Bernoulli(sigmoid(y))`` where ``y`` is
the fixed point of the core :class:`~collagekit.operator.GridCollage` whose code is ``w`` itself or, with
``code_latent``, a small conv network's map of ``w`` to one code per cell (the decoder's
hypernetwork, paper section 4.1). Because the code acts per cell, not per pixel, the same ``w`` decodes
at any integer scale.

Inference (bottom-up then top-down): a conv trunk gives features ``h`` (b f 7 7); ``q(z | x)`` reads all
of ``h``; ``q(w | x, z)`` reads ``h`` beside the top-down state of ``z``. The heads of ``p(w | z)`` and
``q(w | x, z)`` are registry components (kind ``head``, :mod:`collagekit_vae.heads`) picked by name.
The baseline is the same model with the collage swapped for a small transposed-conv decoder
(:class:`ConvLikelihood`): the same encoder, top latent and heads (its per-cell latent has
``conv_latent`` channels, the collage's ``code_latent`` or one per collage parameter), so the
comparison isolates the decoder.

Shapes (einops): ``b`` batch, ``f`` feature channels, ``p`` latent channels per range cell, ``(gh gw)``
the range-cell grid (7 x 7 for 28 x 28 images with 4 x 4 range cells).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from collagekit.errors import CollagekitError
from collagekit.interfaces import LatentHead
from collagekit.operator import CollageParams, GridCollage
from collagekit.solver import Solver
from collagekit_vae.config import VAEConfig
from collagekit_vae.heads import SD_AT_ZERO, gaussian

if TYPE_CHECKING:
    from collagekit.registry import Registry

IMAGE_SIZE = (28, 28)
GRID = (7, 7)  # the encoder trunk's feature map: two stride-2 convolutions of 28 x 28


# ---------------------------------------------------------------- Gaussians
def kl_normal(mu_q: Tensor, sd_q: Tensor, mu_p: Tensor, sd_p: Tensor) -> Tensor:
    """KL(N(mu_q, sd_q^2) || N(mu_p, sd_p^2)) elementwise, in nats."""
    return torch.log(sd_p / sd_q) + (sd_q**2 + (mu_q - mu_p) ** 2) / (2 * sd_p**2) - 0.5


# ---------------------------------------------------------------- likelihoods p(x | w)
class CollageLikelihood(nn.Module):
    """w (b l gh gw) -> Bernoulli logits (b 1 h*s w*s): the collage's fixed point, at any scale ``s``.

    Each cell's code is ``p`` collage parameters in :class:`CollageParams` order (``scale`` and ``mix``
    over the signal-dependent sources, ``aux`` weights, then the ``bias``): the ``l = p`` latent
    channels themselves, or with ``code_latent`` a conv network's map of ``l = code_latent`` channels.
    """

    def __init__(self, collage: GridCollage, solver: Solver, code_latent: int = 0, hidden: int = 64) -> None:
        super().__init__()
        self.collage = collage
        self.solver = solver
        grid = tuple(p // r for p, r in zip(collage.partitioner.padded(IMAGE_SIZE), collage.partitioner.range_size(1)))
        if grid != GRID:
            raise CollagekitError(
                f"the Collage VAE needs a {GRID[0]}x{GRID[1]} grid of range cells on {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} "
                f"images (range_size 4), got {grid[0]}x{grid[1]}"
            )
        shapes = collage.param_shapes(1, IMAGE_SIZE)
        dep, const = shapes["scale"][-1], shapes["aux"][-1]
        self.split = (dep, dep, const, 1)
        self.latent_channels = code_latent or sum(self.split)
        # The decoder's hypernetwork (paper section 4.1): each cell's code from its 3 x 3 neighbourhood of
        # latents. The code stays one per range cell, so decoding at any scale is unchanged.
        self.code = (
            nn.Sequential(nn.Conv2d(code_latent, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, sum(self.split), 1))
            if code_latent
            else nn.Identity()
        )

    def params(self, w: Tensor) -> CollageParams:
        """(b l gh gw) latents -> the collage code of each image (channel axis 1, ranges row-major)."""
        cells = rearrange(self.code(w), "b p gh gw -> b 1 (gh gw) p")
        scale, mix, aux, bias = cells.split(self.split, dim=-1)
        return CollageParams(scale=scale, mix=mix, aux=aux, bias=bias[..., 0])

    def forward(self, w: Tensor, scale: int = 1) -> Tensor:
        params = self.params(w)
        step = self.collage.step_fn(params, IMAGE_SIZE, scale)
        z0 = w.new_zeros(w.shape[0], 1, *(s * scale for s in IMAGE_SIZE))
        logits, _ = self.solver(step, z0)
        return logits


class ConvLikelihood(nn.Module):
    """The baseline: w (b p 7 7) -> logits (b 1 28 28) by two stride-2 transposed convolutions (scale 1 only)."""

    def __init__(self, latent: int, width: int) -> None:
        super().__init__()
        self.latent_channels = latent
        self.net = nn.Sequential(
            nn.Conv2d(latent, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
        )

    def forward(self, w: Tensor, scale: int = 1) -> Tensor:
        if scale != 1:
            raise CollagekitError("the convolutional VAE decodes at scale 1 only; upsample its samples instead")
        return self.net(w)


# ---------------------------------------------------------------- the VAE
class HierarchicalVAE(nn.Module):
    """q(z | x), p(w | z), q(w | x, z) and p(x | w). All terms are per image, in nats."""

    def __init__(
        self, config: VAEConfig, likelihood: CollageLikelihood | ConvLikelihood, prior: LatentHead, posterior: LatentHead
    ) -> None:
        super().__init__()
        self.config = config
        width, feat = config.width, 2 * config.width
        cells = math.prod(GRID)
        self.encoder = nn.Sequential(  # (b 1 28 28) -> (b f 7 7)
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, feat, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(feat, feat, 3, padding=1), nn.GELU(),
        )  # fmt: skip
        self.top_posterior = nn.Linear(feat * cells, 2 * config.z_dim)  # q(z | x)
        self.top_down = nn.Sequential(  # z (b d) -> state (b f 7 7)
            nn.Linear(config.z_dim, feat * cells), nn.Unflatten(1, (feat, *GRID)), nn.GELU(),
            nn.Conv2d(feat, feat, 3, padding=1), nn.GELU(),
        )  # fmt: skip
        latent = likelihood.latent_channels
        prior.bind(feat, latent)  # p(w | z) reads the top-down state
        posterior.bind(2 * feat, latent)  # q(w | x, z) reads the encoder's features beside it
        self.prior = prior
        self.posterior = posterior
        self.likelihood = likelihood

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """x (b 1 28 28) in {0, 1} -> per-image (b,) ``nll``, ``kl_z``, ``kl_w`` from one posterior sample."""
        h = self.encoder(x * 2.0 - 1.0)
        mu_z, sd_z = gaussian(self.top_posterior(h.flatten(1)))
        z = mu_z + sd_z * torch.randn_like(sd_z)
        state = self.top_down(z)
        mu_p, sd_p = self.prior(state)
        mu_q, sd_q = self.posterior(torch.cat([h, state], dim=1))
        if self.config.residual_posterior:
            # A zero head output is the prior itself, so a latent channel the decoder ignores costs no KL
            # without the posterior head having to copy the prior head (the collage code has many).
            mu_q, sd_q = mu_p + mu_q, sd_p * sd_q / SD_AT_ZERO
        w = mu_q + sd_q * torch.randn_like(sd_q)
        logits = self.likelihood(w)
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)
        kl_z = kl_normal(mu_z, sd_z, torch.zeros_like(mu_z), torch.ones_like(sd_z)).sum(-1)
        kl_w = kl_normal(mu_q, sd_q, mu_p, sd_p).flatten(1).sum(-1)
        return {"nll": nll, "kl_z": kl_z, "kl_w": kl_w}

    @torch.no_grad()
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n codes w (n p 7 7) drawn from the prior: z ~ N(0, I), then w ~ p(w | z)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.z_dim, generator=generator).to(device)
        mu_p, sd_p = self.prior(self.top_down(z))
        eps = torch.randn(mu_p.shape, generator=generator).to(device)
        return mu_p + sd_p * eps

    @torch.no_grad()
    def decode(self, w: Tensor, scale: int = 1) -> Tensor:
        """Codes (n p 7 7) -> pixel probabilities (n 1 28s 28s), the mean of p(x | w)."""
        return torch.sigmoid(self.likelihood(w, scale))


class VAEObjective(nn.Module):
    """The shared training loop's objective: the negative beta-ELBO per pixel (so gradient clipping and
    the learning rate do not depend on the image size), with the terms in nats per image as metrics."""

    def __init__(self, model: HierarchicalVAE, beta: float, kl_warmup: int = 0) -> None:
        super().__init__()
        self.model = model
        self.beta = beta
        self.kl_warmup = kl_warmup
        # Training steps taken, in the checkpoint with the weights: a resumed run continues the warm-up.
        self.register_buffer("steps_taken", torch.zeros((), dtype=torch.long))

    def kl_weight(self) -> float:
        """beta, ramped up linearly from beta / kl_warmup over the first ``kl_warmup`` steps."""
        if not self.kl_warmup:
            return self.beta
        return self.beta * min(1.0, (int(self.steps_taken) + 1) / self.kl_warmup)

    def forward(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        x = batch.to(next(self.model.parameters()).device)
        t = self.model.terms(x)
        kl = t["kl_z"] + t["kl_w"]
        loss = (t["nll"] + self.kl_weight() * kl).mean() / x[0].numel()
        if self.training:
            self.steps_taken += 1
        return loss, {"nll": t["nll"].mean(), "kl": kl.mean(), "elbo": -(t["nll"] + kl).mean()}


def build_model(config: VAEConfig, registry: Registry) -> HierarchicalVAE:
    """The model a config describes, its collage and solver built from the registry."""
    if config.decoder == "collage":
        collage, solver = config.collage.build(registry), registry.build("solver", config.solver)
        likelihood = CollageLikelihood(collage, solver, config.code_latent, hidden=2 * config.width)
    else:
        likelihood = ConvLikelihood(config.conv_latent, config.width)
    return HierarchicalVAE(config, likelihood, registry.build("head", config.prior), registry.build("head", config.posterior))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
