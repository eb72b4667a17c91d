"""collagekit: Neural Collages — data as the parameters of a contractive map whose fixed point is the data.

The core is modality-generic: the four component interfaces (:mod:`collagekit.interfaces`), the grid
collage operator (:mod:`collagekit.operator`), the fixed-point solver (:mod:`collagekit.solver`), the
plugin registry, recipes, the ``.clg`` container and the CLI. Modalities arrive as plugins.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("collagekit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from collagekit.errors import CollagekitError

__all__ = ["CollagekitError", "__version__"]
