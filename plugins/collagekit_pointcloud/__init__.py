"""collagekit_pointcloud: point-cloud IFS fractals (Barnsley) — fit, render, PLY I/O via open3d."""
