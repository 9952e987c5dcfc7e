"""Exact laws of 2-D PnP-ULA chains on a grid (for the mismatch tests; ``docs/algorithms.md §mismatch``).

The chain ``X_{k+1} = bin(X_k + δ b(X_k) + √(2δ) Z)`` lives on the cells of a grid (centres ``X``);
``bin`` maps every point of the plane to its cell (points outside the domain to the nearest
border cell). Its transition from a cell is the product of two 1-D cell probabilities, so
``law_{k+1} = M1ᵀ diag(law_k) M2`` exactly. ``bin`` is one fixed function for both chains, so
the data-processing inequality keeps the KL chain-rule bound valid for the grid chains too.

The model is the "cross" mixture of Renaud et al. (2024)'s notebook (means 0,
Σ₁ = [[2, .5], [.5, .15]], Σ₂ = [[.15, .5], [.5, 2]]), A = I, noise variance 1, y = (0, 8),
α = 0.3, ε = 0.05, δ = 0.05, with the exact MMSE denoiser at noise variance ε (the notebook uses
√ε there) and the mismatched denoisers ``D_c(x) = D*(x)`` if ``x₁ > c`` else 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, vstack
from scipy.sparse.linalg import LinearOperator, eigs
from scipy.special import ndtr

from denoisers_zoo.exact import GMMDenoiser

COVS = ([[2.0, 0.5], [0.5, 0.15]], [[0.15, 0.5], [0.5, 2.0]])
EPS, ALPHA, DELTA = 0.05, 0.3, 0.05
Y = np.array([0.0, 8.0])


def exact_denoiser() -> GMMDenoiser:
    return GMMDenoiser([0.5, 0.5], [[0.0, 0.0], [0.0, 0.0]], list(COVS))


class Grid:
    """Cells of ``[lo, hi]`` of side ``h``; ``X``: centres ``[N, 2]``; ``D``: exact denoiser at the centres,
    for noise std ``denoiser_std`` (√ε, consistent with the drift's 1/ε; the notebook's is ε^¼)."""

    def __init__(self, h: float, lo=(-2.5, -2.0), hi=(4.5, 12.0), denoiser_std: float = math.sqrt(EPS)):
        self.h, self.lo = h, np.asarray(lo, float)
        self.shape = tuple(int(round((b - a) / h)) for a, b in zip(lo, hi))
        axes = [self.lo[a] + h * (np.arange(self.shape[a]) + 0.5) for a in range(2)]
        self.X = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
        self.D = exact_denoiser()(torch.from_numpy(self.X), denoiser_std).numpy()

    def denoiser_c(self, c: float) -> np.ndarray:
        return np.where(self.X[:, :1] > c, self.D, 0.0)

    def drift(self, dx: np.ndarray) -> np.ndarray:
        """``b(x) = ∇log p(y|x) + (α/ε)(D(x) − x)`` at the centres (no box)."""
        return (Y - self.X) + ALPHA / EPS * (dx - self.X)

    def kernel(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, s = self.X + DELTA * b, math.sqrt(2 * DELTA)
        out = []
        for a in range(2):
            e = self.lo[a] + self.h * np.arange(self.shape[a] + 1)
            e[0], e[-1] = -np.inf, np.inf
            out.append(np.diff(ndtr((e[None, :] - m[:, a:a + 1]) / s), axis=1))
        return out[0], out[1]

    @staticmethod
    def step(p: np.ndarray, kern) -> np.ndarray:
        return (kern[0].T @ (p[:, None] * kern[1])).reshape(-1)

    def stationary(self, kern) -> np.ndarray:
        n = self.X.shape[0]
        op = LinearOperator((n, n), matvec=lambda v: self.step(np.real(v).ravel(), kern), dtype=float)
        p = np.full(n, 1.0 / n)
        for _ in range(50):
            p = self.step(p, kern)
        _, vec = eigs(op, k=1, which="LM", v0=p, tol=1e-13)
        p = np.abs(np.real(vec[:, 0]))
        return p / p.sum()

    def coarsen(self, p: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
        """``p`` summed over blocks of ``factor × factor`` cells (the grid padded with empty cells
        to a multiple of ``factor``) and the centres of the blocks."""
        padded = [-(-n // factor) * factor for n in self.shape]
        full = np.zeros(padded)
        full[: self.shape[0], : self.shape[1]] = p.reshape(self.shape)
        coarse = full.reshape(padded[0] // factor, factor, padded[1] // factor, factor).sum((1, 3)).ravel()
        side = self.h * factor
        axes = [self.lo[a] + side * (np.arange(padded[a] // factor) + 0.5) for a in range(2)]
        return coarse, np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)


def tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(p - q).sum())


def transport_cost(p: np.ndarray, q: np.ndarray, centres: np.ndarray, power: int, floor: float = 1e-7) -> float:
    """Exact optimal-transport cost ``min_γ Σ γ_ij |x_i − x_j|^power`` between two laws on the same
    cells (``W_power^power``): the transport linear programme solved by HiGHS. Cells with mass
    below ``floor`` are dropped and both laws renormalised (a change of at most the dropped mass
    times the largest cost)."""
    i, j = np.flatnonzero(p > floor), np.flatnonzero(q > floor)
    a, b = p[i] / p[i].sum(), q[j] / q[j].sum()
    cost = np.linalg.norm(centres[i][:, None] - centres[j][None], axis=-1) ** power
    n, m = len(i), len(j)
    cols = np.arange(n * m)
    rows = coo_matrix((np.ones(n * m), (np.repeat(np.arange(n), m), cols)), shape=(n, n * m))
    columns = coo_matrix((np.ones(n * m), (np.tile(np.arange(m), n), cols)), shape=(m, n * m))
    res = linprog(cost.ravel(), A_eq=vstack([rows, columns]).tocsr(), b_eq=np.r_[a, b], bounds=(0, None),
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"transport LP failed: {res.message}")
    return float(res.fun)
