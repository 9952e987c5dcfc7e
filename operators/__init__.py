"""Forward models (blur, inpainting, identity, composition) and noise models."""
from operators.base import LinearOperator, adjoint_error, power_norm_squared

__all__ = ["LinearOperator", "adjoint_error", "power_norm_squared"]
