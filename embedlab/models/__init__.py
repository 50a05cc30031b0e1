"""Models: backbone + pooling + optional projection + normalize, as one `Encoder`."""

from embedlab.models.encoder import Encoder, EncoderConfig
from embedlab.models.pooling import POOLING_MODES, pool

__all__ = ["POOLING_MODES", "Encoder", "EncoderConfig", "pool"]
