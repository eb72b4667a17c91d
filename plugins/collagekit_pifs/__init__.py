"""collagekit_pifs: classical PIFS fractal image compression (Jacquin/Fisher), the baseline."""
