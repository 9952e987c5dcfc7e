"""Push-forward gap-mass bound (Salmona et al. 2022): closed forms, trained generators, diffusion contrast."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from pnp_imaging.analyses.lipschitz import local_lipschitz
from pnp_imaging.analyses.pushforward import (
    LipschitzMLP,
    diffusion_two_mode_samples,
    gap_mass_lower_bound,
    generated_masses,
    grid_slope_lipschitz,
    guaranteed_tv,
    train_generator,
    tv_lower_bound,
    two_mode_masses,
)

# generated_masses: each boundary crossing of G misplaces at most one latent cell, 0.4*17/1e5 = 7e-5
# of mass; two boundaries, float32 outputs -> compare up to 2e-4.
QUADRATURE_TOL = 2e-4


def test_bound_formula_values_and_limits():
    assert gap_mass_lower_bound(1.0, 1.0, 0.5) == pytest.approx(norm.cdf(1.0) - 0.5)
    assert gap_mass_lower_bound(2.0, 0.0, 0.3) == pytest.approx(0.0)
    assert gap_mass_lower_bound(1e9, 5.0, 0.5) == pytest.approx(0.0, abs=1e-8)
    assert gap_mass_lower_bound(1.0, 50.0, 0.4) == pytest.approx(0.6)  # everything right of S is in the gap
    assert gap_mass_lower_bound(3.0, 2.0, 0.0) == 0.0 and gap_mass_lower_bound(3.0, 2.0, 1.0) == 0.0
    values = gap_mass_lower_bound(np.array([1.0, 2.0, 4.0, 8.0]), 4.0, 0.5)
    assert values.shape == (4,) and np.all(np.diff(values) < 0)  # a larger L allows a thinner gap
    # TV: with p = mu(S) only the gap term is left; min over p for a huge gap is min_p max(|p-1/2|, 1-p) = 1/4
    assert tv_lower_bound(2.0, 4.0, 0.5, 0.5, 0.01) == pytest.approx(gap_mass_lower_bound(2.0, 4.0, 0.5) - 0.01)
    assert guaranteed_tv(1.0, 100.0) == pytest.approx(0.25, abs=1e-4)
    assert guaranteed_tv(1e6, 1.0) == pytest.approx(0.0, abs=1e-4)


def test_bound_is_attained_by_an_affine_map_and_holds_for_a_nonlinear_one():
    """G(z) = L z + b attains the bound (the preimage of the gap is an interval of length r/L);
    G(z) = L tanh(z) is L-Lipschitz and must put at least the bound in the gap."""
    lip, b, s, r = 3.0, 0.7, -1.0, 2.0  # S = (-inf, s), gap [s, s + r]
    p = norm.cdf((s - b) / lip)
    gap = norm.cdf((s + r - b) / lip) - p
    assert gap == pytest.approx(gap_mass_lower_bound(lip, r, p), rel=1e-12)
    s, r = -1.5, 2.0  # tanh preimages: z < artanh(s/L), gap z in [artanh(s/L), artanh((s+r)/L)]
    p = norm.cdf(math.atanh(s / lip))
    gap = norm.cdf(math.atanh((s + r) / lip)) - p
    assert gap >= gap_mass_lower_bound(lip, r, p) > 0.1


def test_bad_inputs_raise():
    for kwargs, words in [(dict(lipschitz=0.0, width=1.0), "lipschitz"), (dict(lipschitz=1.0, width=-1.0), "width"),
                          (dict(lipschitz=1.0, width=1.0, p=1.5), "p")]:
        with pytest.raises(ValueError, match=words):
            gap_mass_lower_bound(**kwargs)
    with pytest.raises(ValueError, match="mu"):
        two_mode_masses(0.0)
    with pytest.raises(ValueError, match="lipschitz"):
        LipschitzMLP(-1.0)


def test_trained_constrained_generator_obeys_the_bound():
    """Small seeded case: mu = 4 (gap [-2, 2], target gap mass 0.023), Lip <= 2. Whatever the training
    reached, the generated gap mass must be at least the bound at the certified L; the constraint
    must show (gap mass far above the target's); grid slope and Jacobian power iteration agree."""
    mu, lip = 4.0, 2.0
    model = train_generator(mu, lip, steps=300, batch=500, n_data=10_000, widths=(1, 32, 64, 1),
                            generator=torch.Generator().manual_seed(0))
    certified = model.certified_lipschitz()
    assert certified == pytest.approx(lip, rel=1e-5)
    masses = generated_masses(model, mu)
    bound = float(gap_mass_lower_bound(certified, mu, masses["left"]))
    assert masses["gap"] >= bound - QUADRATURE_TOL
    assert bound > 0.5 and masses["gap"] > 10 * two_mode_masses(mu)["gap"]
    slope = grid_slope_lipschitz(model)
    assert slope <= certified * (1 + 1e-5)
    z = torch.linspace(-10, 10, 1000).view(-1, 1)
    jac = float(local_lipschitz(model, z, n_iter=3).max())
    assert jac == pytest.approx(slope, rel=0.05)



def test_trained_2d_generator_obeys_the_bound():
    """2-D latents and outputs, modes ±4e₁, gap the slab |x₁| <= 2 (the μ-enlargement of {x₁ < −2}
    minus it, Euclidean norm). Measured with 1500 steps: gap − bound = +0.0008 … +0.002 for L = 1…8
    (demos/analysis_pushforward.py --dim 2). Tolerance: 4 binomial stds of the Monte Carlo gap mass."""
    from pnp_imaging.analyses.pushforward import generated_masses_mc, train_generator_2d

    mu = 4.0
    model = train_generator_2d(mu, 2.0, steps=200, batch=500, n_data=10_000, generator=torch.Generator().manual_seed(0))
    certified = model.certified_lipschitz()
    m = generated_masses_mc(model, mu, n=200_000)
    bound = float(gap_mass_lower_bound(certified, mu, m["left"]))
    assert certified == pytest.approx(2.0, rel=1e-5)
    assert m["gap"] >= bound - 4 * m["gap_std"] and bound > 0.5


def test_diffusion_sampler_fills_the_modes_not_the_gap():
    """Exact score + reverse SDE (500 Euler steps) on the same mixture: gap mass close to the target's
    (0.0228; Monte Carlo std sqrt(0.023/20000) = 0.001, Euler bias measured ~0.002 at 1000 steps),
    far below what any 8-Lipschitz push-forward must leave there (0.19 at p = 1/2)."""
    mu = 4.0
    y = diffusion_two_mode_samples(mu, 20_000, steps=500, generator=torch.Generator().manual_seed(1))
    gap = float(((y >= -mu / 2) & (y <= mu / 2)).double().mean())
    left = float((y < -mu / 2).double().mean())
    target = two_mode_masses(mu)
    assert abs(gap - target["gap"]) < 0.008
    assert abs(left - target["left"]) < 0.02
    assert gap < 0.2 * gap_mass_lower_bound(8.0, mu, 0.5)
