"""Complete models."""

from geobasis.nn.models.potential import Potential

__all__ = ["Potential"]
