"""collagekit_image: 2D images for collagekit — tiling, dihedral cells, image files, fractalization."""
