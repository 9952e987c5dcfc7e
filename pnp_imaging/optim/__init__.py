"""MAP estimation with a plug-and-play prior.

- :func:`map_estimate`: PnP-SGD or continuation from a problem and a prior, no config needed.
- :func:`map_health`: does the estimate fit the data and stay in the image range?
- :mod:`~pnp_imaging.optim.pnp_sgd`: the pure step and loop (Laumont et al. 2023).
- :mod:`~pnp_imaging.optim.continuation`: a DPIR-type σ schedule, then forward–backward at √ε.
"""
from pnp_imaging.optim.estimate import MapHealth, map_estimate, map_health
from pnp_imaging.optim.continuation import ContinuationParams
from pnp_imaging.optim.pnp_sgd import MAPResult, SGDParams

__all__ = ["map_estimate", "map_health", "MapHealth", "MAPResult", "SGDParams", "ContinuationParams"]
