r"""Mismatch bounds for PnP-ULA: how far the posterior sampled with one model (denoiser
:math:`D^1`, operator :math:`A^1`) can be from the one sampled with another (Renaud, Liu,
De Bortoli, Almansa & Kamilov, ICLR 2024; derivation in ``docs/algorithms.md §mismatch``).

- :mod:`~pnp_imaging.mismatch.bounds`: pure functions. For two PnP-ULA chains with step δ and
  drifts :math:`b^1, b^2`, started from chain 1's stationary law :math:`\pi^1`, the KL chain rule
  and Pinsker give, after :math:`n` steps,
  :math:`\mathrm{TV} \le \sqrt{(n\delta/8)\,\mathbb E_{\pi^1}\|b^1 - b^2\|^2}`, and
  :math:`|\mathbb E^1 f - \mathbb E^2 f| \le (hi - lo)\,\mathrm{TV}` for :math:`f` valued in the
  box. This is a finite-horizon bound, **not** a bound on the distance between the stationary
  laws (which also depends on how fast chain 2 forgets its start).
- :mod:`~pnp_imaging.mismatch.distances`: the posterior-L2 pseudometric of the paper, the drift
  differences on chain states, :math:`\|A^1 - A^2\|_2`.
- :mod:`~pnp_imaging.mismatch.analysis`: what ``pnp_imaging.run`` does with a ``mismatch:`` section.

The paper's Theorem 1 (its exact inequality and constants) could not be checked, so it is not
implemented; the bound above is derived here.
"""
from pnp_imaging.mismatch.bounds import (bounds_with_mcse, horizon_mcse, mean_and_mcse, mmse_bound, relaxation_horizon,
                                         tv_bound, tv_from_kl)
from pnp_imaging.mismatch.distances import (StateReservoir, data_drift_distance, denoiser_distance, drift_differences,
                                            operator_distance)

__all__ = ["tv_from_kl", "tv_bound", "mmse_bound", "mean_and_mcse", "relaxation_horizon", "horizon_mcse",
           "bounds_with_mcse", "StateReservoir", "denoiser_distance", "operator_distance", "data_drift_distance", "drift_differences"]
