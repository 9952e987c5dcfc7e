"""Analyses of generative priors run on a lab's own data and models.

* :mod:`~pnp_imaging.analyses.regimes` — speciation and collapse times of a diffusion model
  trained on a data set (Biroli, Bonnaire, De Bortoli, Mézard 2024).
* :mod:`~pnp_imaging.analyses.lipschitz` — Lipschitz constants of generators and denoisers by
  power iteration on the Jacobian (shared with ``denoisers_zoo.lipschitz``).
* :mod:`~pnp_imaging.analyses.pushforward` — the lower bound on the mass an L-Lipschitz
  push-forward of a Gaussian puts between separated modes (Salmona, De Bortoli, Delon,
  Desolneux, NeurIPS 2022), and its check on small trained generators.
* :mod:`~pnp_imaging.analyses.cloning` — the cloning experiment: when do two backward
  trajectories split at time t end in the same class (speciation) or on the same training point
  (collapse)?
* :mod:`~pnp_imaging.analyses.digits` — the digits toolkit the generative analyses are measured
  with: data split, classifier, sample evaluation (class balance, Fréchet distance, memorisation).
* :mod:`~pnp_imaging.analyses.cli` — ``pnp-imaging analyze ...``.

Equations and sources: ``docs/algorithms.md §analyses``. Submodules are imported on use
(``import pnp_imaging.analyses`` stays light).
"""
