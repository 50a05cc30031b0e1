"""embedlab: a loss zoo over swappable encoder backbones, composed by Hydra and trained by Lightning."""

__version__ = "0.1.0"
