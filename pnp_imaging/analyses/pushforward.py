r"""Why an L-Lipschitz push-forward of a Gaussian cannot fit separated modes, and a diffusion can.

Salmona, De Bortoli, Delon, Desolneux, *Can push-forward generative models fit multimodal
distributions?* (NeurIPS 2022, arXiv 2206.14476). If :math:`G` is L-Lipschitz and
:math:`\mu_G = G_\#\mathcal N(0, I_k)`, Gaussian isoperimetry gives, for any set S and r >= 0,
:math:`\mu_G(S_r) \ge \Phi(\Phi^{-1}(\mu_G(S)) + r/L)` (:math:`S_r` the r-enlargement). Two modes
separated by a gap :math:`B = S_r \setminus S` of width r therefore leave in the gap at least

.. math:: \mu_G(B) \ge \Phi(\Phi^{-1}(p) + r/L) - p, \qquad p = \mu_G(S)

(:func:`gap_mass_lower_bound`), hence
:math:`TV(\mu_G, \mu) \ge \max(|p - \mu(S)|, \Phi(\Phi^{-1}(p) + r/L) - p - \mu(B))`
(:func:`tv_lower_bound`; :func:`guaranteed_tv` minimises it over the unknown p). This is the
inequality the authors' code evaluates (``runner_dim1.py``: data ½N(−μ,1) + ½N(μ,1), gap
[−μ/2, μ/2], r = μ); the paper's theorem constants were not checked.

The check (:func:`pushforward_experiment`) trains small MLP generators (1-D latent, 1→128→256→1,
leaky-ReLU 0.2, as the authors' code) under Lipschitz constraints and measures their gap mass.
Deviations from the paper: (1) the generators are trained by the exact 1-D Wasserstein-2 loss
between sorted generated and sorted data mini-batches instead of a GAN or VAE objective — in 1-D
that is the optimal-transport fit without an adversary, so the gap mass measures the Lipschitz
constraint, not a training failure; (2) the spectral normalisation divides each weight by its exact
largest singular value (SVD) rather than a one-step power-iteration estimate, so Lip(G) <= L is
certified; (3) the diffusion contrast runs the exact mixture score through an Euler–Maruyama
reverse SDE (the Ornstein–Uhlenbeck convention of ``regimes``) instead of a trained NCSN with
annealed Langevin dynamics. ``docs/algorithms.md §pushforward``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import norm

__all__ = ["gap_mass_lower_bound", "tv_lower_bound", "guaranteed_tv", "two_mode_masses", "LipschitzMLP",
           "train_generator", "generated_masses", "grid_slope_lipschitz", "diffusion_two_mode_samples",
           "pushforward_experiment", "train_generator_2d", "generated_masses_mc", "pushforward_experiment_2d"]


def _check_lw(lipschitz, width) -> tuple[np.ndarray, np.ndarray]:
    lip, r = np.asarray(lipschitz, dtype=float), np.asarray(width, dtype=float)
    if not (np.isfinite(lip).all() and (lip > 0).all()):
        raise ValueError(f"lipschitz: must be finite and > 0, got {lipschitz!r}")
    if not (np.isfinite(r).all() and (r >= 0).all()):
        raise ValueError(f"width: the gap width (mode separation) must be finite and >= 0, got {width!r}")
    return lip, r


def _check_prob(value, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=float)
    if not (np.isfinite(v).all() and ((v >= 0) & (v <= 1)).all()):
        raise ValueError(f"{name}: must be a probability in [0, 1], got {value!r}")
    return v


def gap_mass_lower_bound(lipschitz, width, p=0.5):
    r"""Least mass :math:`\Phi(\Phi^{-1}(p) + r/L) - p` that an L-Lipschitz push-forward of a Gaussian
    puts in an empty gap of width r next to a set of mass p (broadcasts over arrays).

    >>> round(float(gap_mass_lower_bound(1.0, 1.0, 0.5)), 4)  # Phi(1) - 1/2
    0.3413
    """
    lip, r = _check_lw(lipschitz, width)
    p = _check_prob(p, "p")
    return norm.cdf(norm.ppf(p) + r / lip) - p


def tv_lower_bound(lipschitz, width, p, target_left=0.5, target_gap=0.0):
    r""":math:`TV(\mu_G, \mu) \ge \max(|p - \mu(S)|, \Phi(\Phi^{-1}(p) + r/L) - p - \mu(B))` for a
    generator putting mass p on S when the target puts ``target_left`` on S and ``target_gap`` in B."""
    bound = gap_mass_lower_bound(lipschitz, width, p)
    left, gap = _check_prob(target_left, "target_left"), _check_prob(target_gap, "target_gap")
    return np.maximum(np.abs(np.asarray(p, dtype=float) - left), bound - gap)


def guaranteed_tv(lipschitz: float, width: float, target_left: float = 0.5, target_gap: float = 0.0) -> float:
    """TV lower bound valid for *every* L-Lipschitz push-forward: :func:`tv_lower_bound` minimised over
    p on a grid of 20,001 values of [0, 1] (the bound is continuous in p; grid error < 1e-4)."""
    p = np.linspace(0.0, 1.0, 20_001)
    return float(tv_lower_bound(lipschitz, width, p, target_left, target_gap).min())


def two_mode_masses(mu: float) -> dict:
    """Target ½N(−μ,1) + ½N(μ,1): its mass left of the gap [−μ/2, μ/2] (S) and in the gap (B)."""
    if not (math.isfinite(mu) and mu > 0):
        raise ValueError(f"mu: the mode position must be finite and > 0, got {mu!r}")
    left = 0.5 * (norm.cdf(mu / 2) + norm.cdf(-1.5 * mu))
    return {"left": float(left), "gap": float(norm.cdf(-mu / 2) - norm.cdf(-1.5 * mu)), "width": float(mu)}


class LipschitzMLP(torch.nn.Module):
    """``z -> L * MLP(z)``: linear layers divided by their exact spectral norm, leaky-ReLU(0.2)
    (1-Lipschitz) in between, so ``Lip <= L`` (:meth:`certified_lipschitz`)."""

    def __init__(self, lipschitz: float, widths=(1, 128, 256, 1), *, generator: torch.Generator | None = None):
        super().__init__()
        if not (math.isfinite(lipschitz) and lipschitz > 0):
            raise ValueError(f"lipschitz: must be finite and > 0, got {lipschitz!r}")
        self.lipschitz = float(lipschitz)
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            w = torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(torch.zeros(fan_out)))

    def normalised_weights(self) -> list[torch.Tensor]:
        return [w / torch.linalg.matrix_norm(w, ord=2) for w in self.weights]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        ws = self.normalised_weights()
        for i, (w, b) in enumerate(zip(ws, self.biases)):
            h = h @ w.T + b
            if i < len(ws) - 1:
                h = torch.nn.functional.leaky_relu(h, 0.2)
        return self.lipschitz * h

    def certified_lipschitz(self) -> float:
        """``L`` times the product of the normalised layers' spectral norms (each 1 up to rounding)."""
        with torch.no_grad():
            return self.lipschitz * math.prod(float(torch.linalg.matrix_norm(w, ord=2)) for w in self.normalised_weights())


def _mixture_sample(mu: float, n: int, generator: torch.Generator, dim: int = 1) -> torch.Tensor:
    """½N(−μe₁, I) + ½N(μe₁, I) in ``dim`` dimensions."""
    signs = torch.randint(0, 2, (n, 1), generator=generator).float() * 2 - 1
    x = torch.randn(n, dim, generator=generator)
    x[:, :1] += mu * signs
    return x


def train_generator(mu: float, lipschitz: float, *, steps: int = 1500, batch: int = 1000, n_data: int = 50_000,
                    lr: float = 2e-3, widths=(1, 128, 256, 1), generator: torch.Generator | None = None) -> LipschitzMLP:
    """Fit a :class:`LipschitzMLP` with Lip <= ``lipschitz`` to ``n_data`` samples of ½N(−μ,1) + ½N(μ,1)
    by the 1-D Wasserstein-2 loss: mean squared difference of the sorted generated and sorted data
    mini-batches (module doc: a deviation from the paper's GAN/VAE training)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    two_mode_masses(mu)  # checks mu
    data = _mixture_sample(mu, n_data, g)
    model = LipschitzMLP(lipschitz, widths, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = data[torch.randint(0, n_data, (batch,), generator=g)]
        z = torch.randn(batch, 1, generator=g)
        loss = ((torch.sort(model(z), dim=0).values - torch.sort(x, dim=0).values) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def generated_masses(model, mu: float, *, cells: int = 100_000, z_max: float = 8.5) -> dict:
    """Masses of G#N(0,1) left of the gap [−μ/2, μ/2] and in it, by quadrature over the latent: the
    N(0,1) mass of each of ``cells`` equal cells of [−z_max, z_max] goes where G sends the cell's
    midpoint (exact up to the cells where G crosses ±μ/2, at most 0.4·2z_max/cells = 7e-5 of
    mass each, and 2e-17 beyond z_max)."""
    edges = np.linspace(-z_max, z_max, cells + 1)
    weights = np.diff(norm.cdf(edges))
    mid = torch.from_numpy(0.5 * (edges[1:] + edges[:-1])).view(-1, 1)
    out = model(mid.float()).view(-1).double().numpy()
    left = out < -mu / 2
    gap = (out >= -mu / 2) & (out <= mu / 2)
    return {"left": float(weights[left].sum()), "gap": float(weights[gap].sum())}


@torch.no_grad()
def grid_slope_lipschitz(model, *, points: int = 1000, z_max: float = 10.0) -> float:
    """The authors' 1-D estimate: the largest slope |G(a) − G(b)|/|a − b| over a grid of ``points``
    latents in [−z_max, z_max] (adjacent pairs suffice in 1-D); a lower bound of Lip(G)."""
    z = torch.linspace(-z_max, z_max, points).view(-1, 1)
    out = model(z).view(-1).double()
    return float(((out[1:] - out[:-1]).abs() / (2 * z_max / (points - 1))).max())


def _two_mode_score(y: torch.Tensor, mu: float, t: float) -> torch.Tensor:
    r"""Exact score of the OU-noised ½N(−μ,1) + ½N(μ,1): :math:`m_t \tanh(m_t y) - y`, :math:`m_t = \mu e^{-t}`
    (the components keep unit variance: :math:`\Gamma_t = e^{-2t} + \Delta_t = 1`)."""
    m = mu * math.exp(-t)
    return m * torch.tanh(m * y) - y


def diffusion_two_mode_samples(mu: float, n: int, *, steps: int = 1000, t_max: float = 8.0,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` samples of ½N(−μ,1) + ½N(μ,1) from the reverse SDE :math:`-dy = (y + 2F(y,t))dt + \\sqrt2 d\\xi`
    (Euler–Maruyama, ``steps`` uniform steps from ``t_max`` to 0, start N(0,1)) with the exact score F."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    two_mode_masses(mu)
    h = t_max / steps
    y = torch.randn(n, dtype=torch.float64, generator=g)
    for k in range(steps):
        t = t_max - k * h
        y = y + h * (y + 2 * _two_mode_score(y, mu, t)) + math.sqrt(2 * h) * torch.randn(n, dtype=torch.float64, generator=g)
    return y


def _generator_row(mu: float, lip: float, steps: int, seed: int) -> dict:
    model = train_generator(mu, lip, steps=steps, generator=torch.Generator().manual_seed(seed))
    masses = generated_masses(model, mu)
    measured = grid_slope_lipschitz(model)
    certified = model.certified_lipschitz()
    return {"model": f"push-forward L<={lip:g}", "L_certified": certified, "L_measured": measured,
            "p_left": masses["left"], "gap_mass": masses["gap"],
            "bound_certified": float(gap_mass_lower_bound(certified, mu, masses["left"])),
            "bound_measured": float(gap_mass_lower_bound(measured, mu, masses["left"]))}


def pushforward_experiment(mu: float, lipschitz_values=(1.0, 2.0, 4.0, 8.0), *, steps: int = 1500, seed: int = 0,
                           diffusion_samples: int = 100_000) -> list[dict]:
    """One row per Lipschitz constraint (trained generator: certified and measured L, generated mass
    left of and in the gap, the bound at both L), then the diffusion sampler's row (Monte Carlo
    masses, binomial std ~ sqrt(gap/n)) and the target's."""
    rows = [_generator_row(mu, float(lip), steps, seed) for lip in lipschitz_values]
    y = diffusion_two_mode_samples(mu, diffusion_samples, generator=torch.Generator().manual_seed(seed))
    rows.append({"model": "diffusion (exact score, reverse SDE)", "p_left": float((y < -mu / 2).double().mean()),
                 "gap_mass": float(((y >= -mu / 2) & (y <= mu / 2)).double().mean())})
    target = two_mode_masses(mu)
    rows.append({"model": "target", "p_left": target["left"], "gap_mass": target["gap"]})
    return rows


# ---------------------------------------------------------------------------------------------- 2-D
def train_generator_2d(mu: float, lipschitz: float, *, steps: int = 1500, batch: int = 1000, n_data: int = 50_000,
                       lr: float = 2e-3, projections: int = 64, generator: torch.Generator | None = None) -> LipschitzMLP:
    """2-D version of :func:`train_generator`: latent N(0, I₂), data ½N(−μe₁, I) + ½N(μe₁, I), fitted
    by the sliced Wasserstein-2 loss (sorted 1-D projections on ``projections`` random directions per
    step; our choice, like the 1-D loss: an optimal-transport fit without an adversary)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    two_mode_masses(mu)
    data = _mixture_sample(mu, n_data, g, dim=2)
    model = LipschitzMLP(lipschitz, (2, 128, 256, 2), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = data[torch.randint(0, n_data, (batch,), generator=g)]
        theta = torch.randn(2, projections, generator=g)
        theta = theta / theta.norm(dim=0, keepdim=True)
        gen = model(torch.randn(batch, 2, generator=g))
        loss = ((torch.sort(gen @ theta, dim=0).values - torch.sort(x @ theta, dim=0).values) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def generated_masses_mc(model, mu: float, *, n: int = 1_000_000, generator: torch.Generator | None = None) -> dict:
    """Monte Carlo masses of G#N(0, I₂) in S = {x₁ < −μ/2} and in the slab B = {|x₁| <= μ/2}, which
    is S's μ-enlargement minus S (r = μ in the Euclidean norm); binomial std sqrt(m(1 − m)/n)."""
    g = generator if generator is not None else torch.Generator().manual_seed(1)
    x1 = model(torch.randn(n, 2, generator=g))[:, 0].double()
    left, gap = float((x1 < -mu / 2).double().mean()), float((x1.abs() <= mu / 2).double().mean())
    return {"left": left, "gap": gap, "gap_std": math.sqrt(max(gap * (1 - gap), 1.0 / n) / n)}


def pushforward_experiment_2d(mu: float, lipschitz_values=(1.0, 2.0, 4.0, 8.0), *, steps: int = 1500,
                              seed: int = 0) -> list[dict]:
    """:func:`pushforward_experiment` for 2-D generators (latent N(0, I₂)): per Lipschitz constraint the
    certified L, the generated masses (Monte Carlo, with the gap's binomial std) and the bound."""
    rows = []
    for lip in lipschitz_values:
        model = train_generator_2d(mu, float(lip), steps=steps, generator=torch.Generator().manual_seed(seed))
        m = generated_masses_mc(model, mu)
        certified = model.certified_lipschitz()
        rows.append({"model": f"2-D push-forward L<={lip:g}", "L_certified": certified, "p_left": m["left"],
                     "gap_mass": m["gap"], "gap_std": m["gap_std"],
                     "bound_certified": float(gap_mass_lower_bound(certified, mu, m["left"]))})
    target = two_mode_masses(mu)
    rows.append({"model": "target", "p_left": target["left"], "gap_mass": target["gap"]})
    return rows
