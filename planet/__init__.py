"""PlaNet in PyTorch: learning latent dynamics for planning from pixels (Hafner et al., 2019)."""

from planet.config import Config, make_config

__version__ = "0.1.0"
__all__ = ["Config", "make_config", "__version__"]
