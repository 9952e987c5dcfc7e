"""Streaming posterior statistics with O(d) memory.

Everything here is updated one kept sample (or one batch of chain samples) at a time and can
be checkpointed (``state_dict`` / ``load_state_dict``) and merged across chains or processes.

- :class:`RunningMoments`: Welford mean / variance in float64 with an ``int`` count; ``merge``
  (Chan et al. 1979 parallel formula) and ``reduce`` (merge equal-count accumulators along a
  dimension, e.g. the chain dimension).
- :class:`P2Quantiles`: per-pixel streaming quantiles by the P² algorithm (Jain & Chlamtac
  1985), a numba kernel over all pixels. **Approximate**: see the class docstring for the
  measured error.
- :class:`DrawReservoir`: a bounded, evenly thinned set of draws (exact quantiles of those) and
  the batch means of *all* draws (per-pixel ESS-based MCSE of the mean).
- :class:`MultiScaleMoments`: posterior std of ``k x k`` block means (avg-pooled samples) for
  several ``k``: the uncertainty of the image at coarser scales.
- :class:`PosteriorStats`: the bundle the sampling driver feeds with kept samples ``[B, C, H,
  W]`` (B = chains): MMSE (mean), per-pixel std, marginal credible intervals and multi-scale
  std, with per-chain moments kept so that between-chain differences stay visible.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "RunningMoments",
    "P2Quantiles",
    "DrawReservoir",
    "MultiScaleMoments",
    "PosteriorStats",
    "SlowDirection",
]


from pnp_imaging._checks import check_count as _check_int


# --------------------------------------------------------------------------------------------
# Welford moments
# --------------------------------------------------------------------------------------------
class RunningMoments:
    """Streaming mean and variance (Welford), float64 accumulators, ``int`` count.

    ``update(x)`` adds one sample of shape ``shape``; ``update_batch(xs)`` adds ``xs.shape[0]``
    samples at once (exact batch merge). After ``n`` samples, ``mean`` is their average and
    ``variance`` the unbiased (ddof=1) sample variance; with ``n < 2`` the variance is NaN.

    >>> m = RunningMoments((2,))
    >>> for v in ([1.0, 2.0], [3.0, 2.0], [5.0, 2.0]):
    ...     m.update(torch.tensor(v))
    >>> m.count, m.mean.tolist(), m.variance.tolist()
    (3, [3.0, 2.0], [4.0, 0.0])
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.count: int = 0
        self.mean = torch.zeros(self.shape, dtype=dtype, device=device)
        self.m2 = torch.zeros(self.shape, dtype=dtype, device=device)

    # -- updates ------------------------------------------------------------------------------
    def update(self, x: torch.Tensor) -> None:
        """Add one sample ``x`` of shape ``shape`` (any float dtype; accumulated in float64)."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"x has shape {tuple(x.shape)}, expected {self.shape}")
        self.count += 1
        x = x.to(self.mean.dtype)
        delta = x - self.mean
        self.mean.add_(delta, alpha=1.0 / self.count)
        delta.mul_(x - self.mean)
        self.m2.add_(delta)

    def update_batch(self, xs: torch.Tensor) -> None:
        """Add ``xs.shape[0]`` samples, ``xs`` of shape ``[n, *shape]`` (Chan's batch merge)."""
        if tuple(xs.shape[1:]) != self.shape:
            raise ValueError(f"xs has shape {tuple(xs.shape)}, expected [n, *{self.shape}]")
        n_b = xs.shape[0]
        if n_b == 0:
            return
        xs = xs.to(self.mean.dtype)
        mean_b = xs.mean(dim=0)
        m2_b = ((xs - mean_b) ** 2).sum(dim=0)
        self._merge_into(n_b, mean_b, m2_b)

    def _merge_into(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> None:
        n_a = self.count
        n = n_a + n_b
        if n == 0:
            return
        delta = mean_b - self.mean
        self.mean.add_(delta, alpha=n_b / n)
        self.m2.add_(m2_b).add_(delta * delta, alpha=n_a * n_b / n)
        self.count = n

    def merge(self, other: "RunningMoments") -> "RunningMoments":
        """Return a new accumulator equal to having seen the samples of ``self`` and ``other``."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge shapes {self.shape} and {other.shape}")
        out = self.copy()
        out._merge_into(other.count, other.mean.to(out.mean), other.m2.to(out.m2))
        return out

    def reduce(self, dim: int = 0) -> "RunningMoments":
        """Merge the ``shape[dim]`` accumulators along ``dim`` (each holding ``count`` samples).

        Used to pool per-chain moments ``[B, ...]`` into ``[...]``. Exact: with ``k`` slices,
        ``count' = k*count``, ``mean' = mean over slices``, ``m2' = sum m2 + count*sum (mean_i -
        mean')^2``.
        """
        k = self.shape[dim]
        out = RunningMoments(
            self.shape[:dim] + self.shape[dim + 1 :], dtype=self.mean.dtype, device=self.mean.device
        )
        out.count = self.count * k
        if self.count == 0:
            return out
        out.mean = self.mean.mean(dim=dim)
        out.m2 = self.m2.sum(dim=dim) + self.count * (
            (self.mean - out.mean.unsqueeze(dim)) ** 2
        ).sum(dim=dim)
        return out

    # -- results ------------------------------------------------------------------------------
    @property
    def variance(self) -> torch.Tensor:
        """Unbiased variance ``m2/(count-1)``; NaN where ``count < 2``."""
        if self.count < 2:
            return torch.full_like(self.m2, float("nan"))
        return self.m2 / (self.count - 1)

    @property
    def std(self) -> torch.Tensor:
        return self.variance.sqrt()

    def copy(self) -> "RunningMoments":
        out = RunningMoments(self.shape, dtype=self.mean.dtype, device=self.mean.device)
        out.count = self.count
        out.mean = self.mean.clone()
        out.m2 = self.m2.clone()
        return out

    def state_dict(self, copy: bool = True) -> dict:
        """``copy=False``: the live tensors (for a state written at once, e.g. a checkpoint)."""
        keep = (lambda t: t.clone()) if copy else (lambda t: t)
        return {"count": self.count, "mean": keep(self.mean), "m2": keep(self.m2)}

    def load_state_dict(self, state: dict) -> None:
        mean, m2 = state["mean"], state["m2"]
        if tuple(mean.shape) != self.shape or tuple(m2.shape) != self.shape:
            raise ValueError(f"state has shape {tuple(mean.shape)}, expected {self.shape}")
        self.count = _check_int("count", state["count"])
        self.mean = mean.to(dtype=self.mean.dtype, device=self.mean.device).clone()
        self.m2 = m2.to(dtype=self.m2.dtype, device=self.m2.device).clone()

    def __repr__(self) -> str:
        return f"RunningMoments(shape={self.shape}, count={self.count})"


# --------------------------------------------------------------------------------------------
# P² quantiles
# --------------------------------------------------------------------------------------------
class P2Quantiles:
    r"""Per-pixel streaming quantiles by the P² algorithm (Jain & Chlamtac, CACM 28(10), 1985).

    One independent 5-marker P² estimator per (probability, pixel); state arrays ``q`` (marker
    heights, float64) and ``npos`` (marker positions, int64) of shape ``[P, d, 5]`` (a pixel's
    five markers adjacent in memory), plus the
    desired positions ``[P, 5]`` shared by all pixels (every pixel has seen the same number of
    observations). The update is a numba kernel over all pixels; memory is ``O(P d)``.

    **Approximate.** P² tracks a piecewise-parabolic interpolation of the empirical CDF and is
    not the sample quantile. ``tests/test_stats.py::test_p2_error_characterised`` measures it
    against the exact quantiles of N(0,1), Exp(1) and the bimodal 0.5 N(-3,1) + 0.5 N(3,1) with
    n = 2000 i.i.d. observations per pixel: for p in {0.05, 0.5, 0.95} its RMS error is 0.88-1.17
    times the RMS error of the exact *sample* quantile of the same data (so P² adds at most
    ~17 % to the Monte Carlo error) and its bias is at most 0.16 of that error. For correlated
    MCMC draws its share of the error *grows*: on AR(1) draws with φ = 0.9 (n = 2000 per chain,
    2 chains) its total RMS error is 1.5–1.7 times that of the exact sample quantile of the same
    draws, 1.2 at φ = 0.99 (``tests/test_stats.py::test_quantile_accuracy_on_ar1``): its markers
    move by at most one position per observation and lag the slowly wandering draws. Fed every
    4th draw it is 1.27 at φ = 0.9 (:class:`PosteriorStats` ``quantile_every``);
    :class:`DrawReservoir` quantiles do better still on very slowly mixing chains and worse on
    fast ones (``docs/algorithms.md §streaming-stats``).
    For fewer than 5 observations the exact sample quantile (linear interpolation) is
    returned; before any observation, NaN.

    Observations with the same count are fed in the order given; for chains, each chain's
    sample is one observation (pooled quantiles across chains).
    """

    def __init__(self, shape: Sequence[int], probs: Sequence[float] = (0.05, 0.95)) -> None:
        self.shape = tuple(int(s) for s in shape)
        probs = tuple(float(p) for p in probs)
        if not probs or any(not (0.0 < p < 1.0) for p in probs):
            raise ValueError(f"probs must be in (0, 1), got {probs}")
        self.probs = probs
        d = int(np.prod(self.shape)) if self.shape else 1
        self.d = d
        n_p = len(probs)
        self.count: int = 0
        self.q = np.full((n_p, d, 5), 0.0)  # full, not zeros: pages written now (as DrawReservoir's)
        self.npos = np.full((n_p, d, 5), 0, dtype=np.int64)
        pr = np.asarray(probs)[:, None]
        self.desired = np.hstack([np.ones_like(pr), 1 + 2 * pr, 1 + 4 * pr, 3 + 2 * pr, 5 + 0 * pr])
        self.dn = np.hstack([0 * pr, pr / 2, pr, (1 + pr) / 2, 1 + 0 * pr])

    def update(self, xs: torch.Tensor | np.ndarray) -> None:
        """Add observations ``xs`` of shape ``[m, *shape]`` (m observations per pixel)."""
        from pnp_imaging._p2_kernels import p2_init, p2_update  # numba: imported and compiled on first use

        if isinstance(xs, torch.Tensor):
            xs = xs.detach().to("cpu", torch.float64).numpy()
        xs = np.ascontiguousarray(np.asarray(xs, dtype=np.float64))
        if xs.shape[1:] != self.shape:
            raise ValueError(f"xs has shape {xs.shape}, expected [m, *{self.shape}]")
        xs = xs.reshape(xs.shape[0], self.d)
        if not np.all(np.isfinite(xs)):
            raise ValueError("P2Quantiles.update: observations contain NaN/Inf")
        start = 0
        if self.count < 5:
            start = p2_init(self.q, self.npos, self.count, xs)
            self.count += start
        if start < xs.shape[0]:
            p2_update(self.q, self.npos, self.desired, self.dn, xs[start:])
            self.count += xs.shape[0] - start

    def quantiles(self) -> np.ndarray:
        """Current estimates, shape ``[P, *shape]`` (float64)."""
        n_p = len(self.probs)
        if self.count == 0:
            return np.full((n_p,) + self.shape, np.nan)
        if self.count < 5:
            vals = self.q[0, :, : self.count].T
            out = np.quantile(vals, np.asarray(self.probs), axis=0)
            return out.reshape((n_p,) + self.shape)
        return self.q[:, :, 2].reshape((n_p,) + self.shape).copy()

    def state_dict(self, copy: bool = True) -> dict:
        """Torch tensors (loadable with ``torch.load(weights_only=True)``); ``copy=False`` shares
        the marker arrays (for a state written at once, e.g. a checkpoint)."""
        keep = (lambda a: a.copy()) if copy else (lambda a: a)
        return {
            "count": self.count,
            "probs": list(self.probs),
            "q": torch.from_numpy(keep(self.q)),
            "npos": torch.from_numpy(keep(self.npos)),
            "desired": torch.from_numpy(self.desired.copy()),
        }

    def load_state_dict(self, state: dict) -> None:
        def arr(v, dtype):
            v = v.numpy() if isinstance(v, torch.Tensor) else v
            return np.array(v, dtype=dtype)

        q = arr(state["q"], np.float64)
        if tuple(float(p) for p in state["probs"]) != self.probs or q.shape != self.q.shape:
            raise ValueError("P2Quantiles state does not match this estimator's probs/shape")
        self.count = _check_int("count", state["count"])
        self.q = q
        self.npos = arr(state["npos"], np.int64)
        self.desired = arr(state["desired"], np.float64)


# --------------------------------------------------------------------------------------------
# bounded reservoir of draws and batch means
# --------------------------------------------------------------------------------------------
class DrawReservoir:
    r"""Bounded, evenly thinned reservoir of draws per chain, and the batch means of all draws.

    Draws arrive as ``[B, *shape]`` (B = chains). The stream is cut into consecutive slots of
    ``stride`` draws; for each complete slot the reservoir keeps, per chain, its **last draw**
    and the **mean of its draws** (float32). When ``capacity`` slots are full, adjacent slots are
    merged (the later draw and the average of the two means are kept) and ``stride`` doubles, so
    memory stays ``2 · capacity · B · prod(shape)`` floats whatever the run length, and the kept
    draws are always the draws ``stride, 2·stride, ...`` of each chain (thinning done online).

    - :meth:`quantiles`: the exact sample quantiles (linear interpolation, numpy's default) of
      the kept draws pooled over chains. Thinning by less than the autocorrelation time loses
      little, so on very slowly mixing chains they beat P² on all draws; when the ESS approaches
      or exceeds ``B · capacity`` they are worse (measured on AR(1) draws in
      ``docs/algorithms.md §streaming-stats``).
    - :meth:`mcse_mean`: per-pixel Monte Carlo standard error of the mean, ``sd/√ESS`` of the
      batch-mean series (Vehtari et al. 2021, with :func:`pnp_imaging.diagnostics.mcse_mean_pixels`):
      the batch means cover every draw (the mean of the series is the mean of the complete slots),
      so no information is lost to the thinning; when ``stride`` exceeds the autocorrelation time
      it is the classical batch-means estimator (Flegal & Jones 2010).
    """

    #: pixels per block of :meth:`mcse_mean` (its float64 copies: ~8·capacity·B bytes per pixel of a block)
    MCSE_BLOCK = 2**14

    def __init__(self, shape: Sequence[int], capacity: int = 64, *, keep_draws: bool = True,
                 device: str | torch.device = "cpu") -> None:
        self.shape = tuple(int(s) for s in shape)
        self.capacity = _check_int("capacity", capacity, 4)
        if self.capacity % 2:
            raise ValueError(f"capacity: must be even (slots are merged in pairs), got {capacity}")
        self.stride, self.n_slots, self.in_slot = 1, 0, 0
        # zeros, not empty: the pages are written now, so a run that does not fit in memory runs out
        # of it at the start rather than when the reservoir fills, and a short run shows a long run's footprint
        self.means = torch.zeros((self.capacity, *self.shape), dtype=torch.float32, device=device)
        self.draws = torch.zeros_like(self.means) if keep_draws else None
        self.acc = torch.zeros(self.shape, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor) -> None:
        """Add one draw per chain, ``x`` of shape ``[B, *shape]``."""
        self.acc.add_(x.detach())
        self.in_slot += 1
        if self.in_slot < self.stride:
            return
        if self.draws is not None:
            self.draws[self.n_slots].copy_(x.detach())
        self.means[self.n_slots].copy_(self.acc.div_(self.stride))
        self.acc.zero_()
        self.in_slot, self.n_slots = 0, self.n_slots + 1
        if self.n_slots == self.capacity:
            half = self.capacity // 2
            if self.draws is not None:
                self.draws[:half] = self.draws[1::2].clone()
            self.means[:half] = 0.5 * (self.means[0::2] + self.means[1::2])
            self.n_slots, self.stride = half, 2 * self.stride

    def quantiles(self, probs: Sequence[float]) -> torch.Tensor:
        """Exact quantiles at ``probs`` of the kept draws pooled over chains: ``[P, *shape[1:]]``
        float64 (NaN before the first complete slot)."""
        if self.draws is None:
            raise ValueError("DrawReservoir(keep_draws=False) keeps no draws; build it with keep_draws=True")
        probs_t = torch.as_tensor(tuple(probs), dtype=torch.float64)
        if self.n_slots == 0:
            return torch.full((len(probs_t), *self.shape[1:]), float("nan"), dtype=torch.float64)
        pooled = self.draws[: self.n_slots].reshape(-1, *self.shape[1:]).sort(dim=0).values.double()
        pos = probs_t * (pooled.shape[0] - 1)
        lo = pos.floor().long()
        hi = torch.clamp(lo + 1, max=pooled.shape[0] - 1)
        w = (pos - lo).reshape(-1, *([1] * (pooled.ndim - 1)))
        return pooled[lo] * (1 - w) + pooled[hi] * w

    def mcse_mean(self) -> torch.Tensor:
        """Per-pixel MCSE of the mean over chains and draws, ``[*shape[1:]]`` float64 (NaN with
        fewer than 4 complete slots). Computed by blocks of :attr:`MCSE_BLOCK` pixels (each
        pixel's figure depends on its own series only; the same numbers as in one pass, tested),
        so the float64 working copies stay small whatever the image size."""
        from pnp_imaging.diagnostics import mcse_mean_pixels

        if self.n_slots < 4:
            return torch.full(self.shape[1:], float("nan"), dtype=torch.float64)
        flat = self.means[: self.n_slots].reshape(self.n_slots, self.shape[0], -1)  # (slot, chain, pixel)
        out = np.empty(flat.shape[2])
        for start in range(0, flat.shape[2], self.MCSE_BLOCK):
            block = flat[:, :, start:start + self.MCSE_BLOCK].double().cpu().numpy().transpose(1, 0, 2)
            out[start:start + self.MCSE_BLOCK] = mcse_mean_pixels(block)
        return torch.from_numpy(out).reshape(self.shape[1:])

    def state_dict(self, copy: bool = True) -> dict:
        """``copy=False``: views of the live buffers, no copy (a checkpoint: ``torch.save`` then
        writes the buffers' whole storage, all ``capacity`` slots, and loads them back as views
        of the filled slots)."""
        def keep(t):
            return t.cpu().clone() if copy else t.cpu()

        return {"stride": self.stride, "n_slots": self.n_slots, "in_slot": self.in_slot, "capacity": self.capacity,
                "draws": None if self.draws is None else keep(self.draws[: self.n_slots]),
                "means": keep(self.means[: self.n_slots]),
                "acc": self.acc.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity or tuple(state["acc"].shape) != self.shape:
            raise ValueError("DrawReservoir state does not match this reservoir's capacity/shape")
        self.stride, self.n_slots = _check_int("stride", state["stride"], 1), _check_int("n_slots", state["n_slots"])
        self.in_slot = _check_int("in_slot", state["in_slot"])
        if self.draws is not None:
            self.draws[: self.n_slots] = state["draws"].to(self.draws)
        self.means[: self.n_slots] = state["means"].to(self.means)
        self.acc = state["acc"].to(self.acc).clone()


# --------------------------------------------------------------------------------------------
# Multi-scale uncertainty
# --------------------------------------------------------------------------------------------
class MultiScaleMoments:
    """Posterior moments of ``k x k`` block averages, for each ``k`` in ``scales``.

    A sample ``x`` of shape ``[B, C, H, W]`` is average-pooled with kernel = stride = ``k``
    (``ceil_mode=True``: blocks at the right/bottom edges average only the pixels present), and a
    :class:`RunningMoments` of shape ``[B, C, ceil(H/k), ceil(W/k)]`` is updated. The posterior
    std of block means shrinks with ``k`` like ``1/k`` for independent pixels and stays flat for
    fully correlated ones: it shows at which scale the image is determined by the data.
    ``k = 1`` is the per-pixel std.
    """

    def __init__(
        self,
        shape: Sequence[int],
        scales: Sequence[int] = (1, 2, 4, 8),
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 4:
            raise ValueError(f"shape must be [B, C, H, W], got {self.shape}")
        self.scales = tuple(_check_int("scales", k, 1) for k in scales)
        b, c, h, w = self.shape
        self.moments = {
            k: RunningMoments((b, c, -(-h // k), -(-w // k)), device=device) for k in self.scales
        }

    @staticmethod
    def block_mean(x: torch.Tensor, k: int) -> torch.Tensor:
        """Means over ``k x k`` blocks (ragged edge blocks average the pixels present); equals
        ``F.avg_pool2d(x, k, ceil_mode=True)`` but by reshape + sum, which avoids avg_pool2d's
        thread start-up cost on small images."""
        if k == 1:
            return x
        b, c, h, w = x.shape
        ph, pw = (-h) % k, (-w) % k
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
            ones = F.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), (0, pw, 0, ph))
            cnt = ones.reshape(1, 1, (h + ph) // k, k, (w + pw) // k, k).sum(dim=(3, 5))
        else:
            cnt = k * k
        return x.reshape(b, c, (h + ph) // k, k, (w + pw) // k, k).sum(dim=(3, 5)) / cnt

    @staticmethod
    def _pair_sums(x: torch.Tensor) -> torch.Tensor:
        """Sums over 2 x 2 blocks (zero-padded to even sizes) by strided adds: repeated, the
        sums over 2^j x 2^j blocks; ~30x faster on CPU than a reshape-sum over two dimensions."""
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        y = x[..., 0::2] + x[..., 1::2]
        return y[..., 0::2, :] + y[..., 1::2, :]

    def _block_means(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """``{k: block_mean(x, k)}`` for every scale; powers of two from one chain of pair sums."""
        out, sums, level = {}, x, 1
        counts = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        for k in sorted(self.moments):
            if k & (k - 1):  # not a power of two
                out[k] = self.block_mean(x, k)
                continue
            while level < k:
                sums, counts, level = self._pair_sums(sums), self._pair_sums(counts), 2 * level
            out[k] = sums / counts
        return out

    def update(self, x: torch.Tensor) -> None:
        x64 = x.detach().to(torch.float64)
        for k, block in self._block_means(x64).items():
            self.moments[k].update(block)

    def std(self, *, pooled: bool = True) -> dict[int, torch.Tensor]:
        """``{k: std of k x k block means}``; pooled over chains (``[1, C, h, w]``) by default."""
        if pooled:
            return {k: m.reduce(0).std.unsqueeze(0) for k, m in self.moments.items()}
        return {k: m.std for k, m in self.moments.items()}

    def state_dict(self, copy: bool = True) -> dict:
        return {str(k): m.state_dict(copy) for k, m in self.moments.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.moments.items():
            m.load_state_dict(state[str(k)])


# --------------------------------------------------------------------------------------------
# The bundle the driver updates
# --------------------------------------------------------------------------------------------
class PosteriorStats:
    """Streaming posterior summaries for chains stored as a batch ``[B, C, H, W]``.

    ``update(x)`` is called by the driver on kept samples only. It updates per-chain Welford
    moments ``[B, C, H, W]`` (float64), the :class:`DrawReservoir` (``reservoir`` slots per chain:
    the per-pixel MCSE of the mean, and with ``quantiles="reservoir"`` exact quantiles of its
    thinned draws), the pooled per-pixel P² quantiles when ``quantiles="p2"`` (the default; each
    chain's sample is one observation; fed every ``quantile_every``-th kept draw, default 4: on
    correlated draws this is both 4x cheaper and more accurate than every draw, see
    ``docs/algorithms.md §streaming-stats``; pass 1 for nearly independent draws) and the
    multi-scale moments (skipped when ``scales`` is empty). Results (:meth:`mmse`, :meth:`std`,
    :meth:`credible_interval`, :meth:`mcse_mean`, :meth:`multiscale_std`) are pooled over chains
    and returned as ``[1, C, H, W]`` tensors. ``docs/algorithms.md §streaming-stats`` gives the
    measured accuracy of both quantile methods and the cost per draw.
    """

    QUANTILE_METHODS = ("reservoir", "p2")

    def __init__(
        self,
        shape: Sequence[int],
        *,
        probs: Sequence[float] = (0.05, 0.95),
        scales: Sequence[int] = (1, 2, 4, 8),
        device: str | torch.device = "cpu",
        quantiles: str = "p2",
        reservoir: int = 64,
        quantile_every: int = 4,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 4:
            raise ValueError(f"shape must be [B, C, H, W] (B = chains), got {self.shape}")
        if quantiles not in self.QUANTILE_METHODS:
            raise ValueError(f"quantiles: must be one of {', '.join(self.QUANTILE_METHODS)}, got {quantiles!r}")
        self.moments = RunningMoments(self.shape, device=device)
        self.probs = tuple(float(p) for p in probs)
        if any(not 0.0 < p < 1.0 for p in self.probs):
            raise ValueError(f"probs must be in (0, 1), got {self.probs}")
        self.quantile_method = quantiles
        self.quantile_every = _check_int("quantile_every", quantile_every, 1)
        self.reservoir = DrawReservoir(self.shape, reservoir, keep_draws=quantiles == "reservoir", device=device)
        use_p2 = self.probs and quantiles == "p2"
        self.quantile_estimator = P2Quantiles(self.shape[1:], self.probs) if use_p2 else None
        ms_scales = tuple(k for k in scales if k != 1)
        self.multiscale = MultiScaleMoments(self.shape, ms_scales, device=device) if ms_scales else None
        self.scales = tuple(scales)

    @property
    def count(self) -> int:
        """Number of kept samples per chain."""
        return self.moments.count

    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        self.moments.update(x)
        self.reservoir.update(x)
        if self.quantile_estimator is not None and self.moments.count % self.quantile_every == 0:
            self.quantile_estimator.update(x)
        if self.multiscale is not None:
            self.multiscale.update(x)

    def pooled(self) -> RunningMoments:
        return self.moments.reduce(0)

    def mmse(self) -> torch.Tensor:
        """Posterior mean (MMSE estimate) pooled over chains, ``[1, C, H, W]`` float64."""
        return self.pooled().mean.unsqueeze(0)

    def std(self) -> torch.Tensor:
        """Per-pixel posterior std pooled over chains, ``[1, C, H, W]``."""
        return self.pooled().std.unsqueeze(0)

    def chain_means(self) -> torch.Tensor:
        return self.moments.mean.clone()

    def credible_interval(self) -> tuple[torch.Tensor, ...]:
        """Per-pixel marginal quantiles at ``probs``, each ``[1, C, H, W]`` float64: P² estimates
        (default) or exact quantiles of the reservoir's draws (``quantiles="reservoir"``)."""
        if not self.probs:
            raise ValueError("PosteriorStats(probs=()) keeps no quantiles; pass probs=(0.05, 0.95)")
        if self.quantile_estimator is not None:
            qs = torch.from_numpy(self.quantile_estimator.quantiles())
        else:
            qs = self.reservoir.quantiles(self.probs).cpu()
        return tuple(q.unsqueeze(0) for q in qs)

    def mcse_mean(self) -> torch.Tensor:
        """Per-pixel Monte Carlo standard error of the MMSE, ``[1, C, H, W]`` float64
        (:meth:`DrawReservoir.mcse_mean`: ESS-based, on the batch means of every kept draw)."""
        return self.reservoir.mcse_mean().unsqueeze(0)

    def multiscale_std(self) -> dict[int, torch.Tensor]:
        """``{k: posterior std of k x k block means}``, pooled over chains."""
        out = {}
        for k in self.scales:
            if k == 1:
                out[1] = self.std()
            else:
                out[k] = self.multiscale.moments[k].reduce(0).std.unsqueeze(0)
        return out

    def state_dict(self, copy: bool = True) -> dict:
        """The statistics' state; ``copy=False`` shares the live buffers instead of copying them
        (a checkpoint written at once: no transient copy of the statistics, ``docs/algorithms.md §memory``)."""
        return {
            "moments": self.moments.state_dict(copy),
            "reservoir": self.reservoir.state_dict(copy),
            "quantiles": None if self.quantile_estimator is None else self.quantile_estimator.state_dict(copy),
            "multiscale": None if self.multiscale is None else self.multiscale.state_dict(copy),
        }

    def load_state_dict(self, state: dict) -> None:
        self.moments.load_state_dict(state["moments"])
        self.reservoir.load_state_dict(state["reservoir"])
        if self.quantile_estimator is not None:
            self.quantile_estimator.load_state_dict(state["quantiles"])
        if self.multiscale is not None:
            self.multiscale.load_state_dict(state["multiscale"])


# --------------------------------------------------------------------------------------------
# online estimate of the slowest direction
# --------------------------------------------------------------------------------------------
class SlowDirection:
    """Online estimate of the leading principal component of the iterates (the chain's slowest
    direction, ``docs/algorithms.md §slow-direction``).

    Block power iteration on windowed sample covariances: the iterations ``start < i <= stop``
    are split into ``windows`` windows; in each, ``n · Cov · v`` is accumulated from the pooled
    (all chains) iterates and ``v`` is replaced by its normalisation at the end of the window.
    ``v0`` is the fixed random start. Memory: three vectors of one image's size, float64.
    """

    def __init__(self, d: int, start: int, stop: int, v0: torch.Tensor, windows: int = 10):
        self.start, self.stop = start, stop
        self.window = max(1, (stop - start) // windows)
        self.v = v0.to(torch.float64)
        self._reset(d)

    def _reset(self, d: int):
        self.n = 0
        self.sx = torch.zeros(d, dtype=torch.float64, device=self.v.device)
        self.sxv = torch.zeros(d, dtype=torch.float64, device=self.v.device)
        self.sv = 0.0

    def update(self, i: int, x_flat: torch.Tensor) -> None:
        """Feed iteration ``i``'s chains ``x_flat`` ``[B, d]`` (ignored outside the window range)."""
        if not (self.start < i <= self.stop):
            return
        x = x_flat.to(torch.float64)
        p = x @ self.v  # [B]
        self.sx += x.sum(0)
        self.sxv += p @ x
        self.sv += float(p.sum())
        self.n += x.shape[0]
        if (i - self.start) % self.window == 0 or i == self.stop:
            self._pool_ranks()
            u = self.sxv - self.sx * (self.sv / self.n)  # n * windowed covariance @ v
            nrm = torch.linalg.vector_norm(u)
            if torch.isfinite(nrm) and nrm > 0:
                self.v = u / nrm
            self._reset(x.shape[1])

    def _pool_ranks(self) -> None:
        """In a distributed run (:mod:`pnp_imaging.distributed`) the window's sums pool the
        chains of every rank, so all ranks hold the same direction; nothing otherwise."""
        from pnp_imaging import distributed

        ctx = distributed.active()
        if ctx is None or ctx.world_size == 1:
            return
        d = self.sx.numel()
        extra = torch.tensor([self.sv, float(self.n)], dtype=torch.float64, device=self.sx.device)
        total = distributed.sum_across_ranks(torch.cat([self.sx, self.sxv, extra]))
        self.sx, self.sxv = total[:d].clone(), total[d:2 * d].clone()
        self.sv, self.n = float(total[2 * d]), int(round(float(total[2 * d + 1])))

    def state_dict(self) -> dict:
        return {"v": self.v.clone(), "n": self.n, "sx": self.sx.clone(), "sxv": self.sxv.clone(), "sv": self.sv}

    def load_state_dict(self, s: dict) -> None:
        self.v, self.n, self.sx, self.sxv, self.sv = s["v"].clone(), s["n"], s["sx"].clone(), s["sxv"].clone(), s["sv"]
