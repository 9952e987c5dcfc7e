"""DMMD: the noise-adaptive MMD gradient flow (Galashov, De Bortoli, Gretton, "Deep MMD gradient flow
without adversarial training", ICLR 2025, arXiv 2405.06780) as a second generative prior, at the
scale of scikit-learn's 8x8 digits.

Modules (one job each): ``noising`` (forward diffusion), ``features`` (noise-conditional feature
network φ_θ(x, t)), ``mmd`` (MMD², witness and its gradient), ``objective`` (training loss),
``recipe`` / ``train`` (resumable training), ``flow`` (particle sampling), ``store`` (shipped
weights: install, load, sample), ``evaluate`` / ``card`` (report, model card), ``cli``
(``pnp-imaging dmmd train|sample|evaluate``). What is faithful to the paper and what is our choice:
``docs/algorithms.md`` §DMMD.

    >>> from pnp_imaging.dmmd.store import load_model, sample   # doctest: +SKIP
    >>> images = sample(load_model("dmmd_digits"), 64, seed=0)  # (64, 8, 8) in [0, 1]
"""
