"""tgdfer: TG-DFER as a two-stage pipeline (cached CLIP features -> fast head training)."""

__version__ = "0.1.0"

from .labels import CLASSES, NUM_CLASSES

__all__ = ["__version__", "CLASSES", "NUM_CLASSES"]
