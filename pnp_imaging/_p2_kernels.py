"""Compiled (numba) kernels of the P² quantile estimator (Jain & Chlamtac 1985), used by
:class:`pnp_imaging.stats.P2Quantiles`. A module of its own so that importing the statistics
does not import numba (0.7 s); it is loaded on the first quantile update."""
import numba


@numba.njit(cache=True)
def p2_init(q, npos, count_before, xs):  # pragma: no cover - compiled
    """Fill the first five observations (count_before < 5) into q[:, :, k]; sort at 5."""
    n_probs, d, _ = q.shape
    m = xs.shape[0]
    used = 0
    c = count_before
    while used < m and c < 5:
        for p in range(n_probs):
            for j in range(d):
                q[p, j, c] = xs[used, j]
        c += 1
        used += 1
    if c == 5 and count_before < 5:
        for p in range(n_probs):
            for j in range(d):
                # insertion sort of 5 values
                for a in range(1, 5):
                    v = q[p, j, a]
                    b = a - 1
                    while b >= 0 and q[p, j, b] > v:
                        q[p, j, b + 1] = q[p, j, b]
                        b -= 1
                    q[p, j, b + 1] = v
                for a in range(5):
                    npos[p, j, a] = a + 1
    return used


@numba.njit(cache=True)
def p2_update(q, npos, desired, dn, xs):  # pragma: no cover - compiled
    """P² update (Jain & Chlamtac 1985, steps B.1-B.3) of every pixel with every row of xs.

    q: [P, d, 5] marker heights; npos: [P, d, 5] int64 marker positions (1-based; the
    five markers of a pixel are adjacent in memory: one cache line);
    desired: [P, 5] desired positions (shared by all pixels: same count); dn: [P, 5] increments;
    xs: [m, d] observations, processed in row order.
    """
    n_probs, d, _ = q.shape
    m = xs.shape[0]
    for r in range(m):
        for p in range(n_probs):
            for i in range(5):
                desired[p, i] += dn[p, i]
            for j in range(d):
                x = xs[r, j]
                # B.1: find the cell k and adjust the extremes
                if x < q[p, j, 0]:
                    q[p, j, 0] = x
                    k = 0
                elif x >= q[p, j, 4]:
                    q[p, j, 4] = x
                    k = 3
                else:
                    k = 0
                    while k < 3 and x >= q[p, j, k + 1]:
                        k += 1
                # B.2: shift the positions of the markers above the cell
                for i in range(k + 1, 5):
                    npos[p, j, i] += 1
                # B.3: adjust the three middle markers
                for i in range(1, 4):
                    ni = npos[p, j, i]
                    dlt = desired[p, i] - ni
                    up = npos[p, j, i + 1] - ni
                    down = npos[p, j, i - 1] - ni
                    if (dlt >= 1.0 and up > 1) or (dlt <= -1.0 and down < -1):
                        s = 1 if dlt > 0 else -1
                        qi = q[p, j, i]
                        qm = q[p, j, i - 1]
                        qp = q[p, j, i + 1]
                        nm = npos[p, j, i - 1]
                        np_ = npos[p, j, i + 1]
                        # piecewise-parabolic prediction
                        cand = qi + s / (np_ - nm) * (
                            (ni - nm + s) * (qp - qi) / (np_ - ni)
                            + (np_ - ni - s) * (qi - qm) / (ni - nm)
                        )
                        if qm < cand < qp:
                            q[p, j, i] = cand
                        else:  # linear prediction
                            if s > 0:
                                q[p, j, i] = qi + (qp - qi) / (np_ - ni)
                            else:
                                q[p, j, i] = qi - (qm - qi) / (nm - ni)
                        npos[p, j, i] = ni + s
