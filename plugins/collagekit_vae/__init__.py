"""collagekit_vae: Collage VAEs, generative models whose latents are grid-collage parameters (paper §4.1)."""
