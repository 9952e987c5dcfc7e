"""Compiled (numba) kernels of the P² quantile estimator (Jain & Chlamtac 1985), used by
:class:`pnp_imaging.stats.P2Quantiles`. A module of its own so that importing the statistics
does not import numba (0.7 s); it is loaded on the first quantile update."""
import numba


@numba.njit(cache=True)
def p2_init(q, npos, count_before, xs):  # pragma: no cover - compiled
    """Fill the first five observations (count_before < 5) into q[:, k, :]; sort at 5."""
    n_probs, _, d = q.shape
    m = xs.shape[0]
    used = 0
    c = count_before
    while used < m and c < 5:
        for p in range(n_probs):
            for j in range(d):
                q[p, c, j] = xs[used, j]
        c += 1
        used += 1
    if c == 5 and count_before < 5:
        for p in range(n_probs):
            for j in range(d):
                # insertion sort of 5 values
                for a in range(1, 5):
                    v = q[p, a, j]
                    b = a - 1
                    while b >= 0 and q[p, b, j] > v:
                        q[p, b + 1, j] = q[p, b, j]
                        b -= 1
                    q[p, b + 1, j] = v
                for a in range(5):
                    npos[p, a, j] = a + 1
    return used


@numba.njit(cache=True)
def p2_update(q, npos, desired, dn, xs):  # pragma: no cover - compiled
    """P² update (Jain & Chlamtac 1985, steps B.1-B.3) of every pixel with every row of xs.

    q: [P, 5, d] marker heights; npos: [P, 5, d] int64 marker positions (1-based);
    desired: [P, 5] desired positions (shared by all pixels: same count); dn: [P, 5] increments;
    xs: [m, d] observations, processed in row order.
    """
    n_probs, _, d = q.shape
    m = xs.shape[0]
    for r in range(m):
        for p in range(n_probs):
            for i in range(5):
                desired[p, i] += dn[p, i]
            for j in range(d):
                x = xs[r, j]
                # B.1: find the cell k and adjust the extremes
                if x < q[p, 0, j]:
                    q[p, 0, j] = x
                    k = 0
                elif x >= q[p, 4, j]:
                    q[p, 4, j] = x
                    k = 3
                else:
                    k = 0
                    while k < 3 and x >= q[p, k + 1, j]:
                        k += 1
                # B.2: shift the positions of the markers above the cell
                for i in range(k + 1, 5):
                    npos[p, i, j] += 1
                # B.3: adjust the three middle markers
                for i in range(1, 4):
                    ni = npos[p, i, j]
                    dlt = desired[p, i] - ni
                    up = npos[p, i + 1, j] - ni
                    down = npos[p, i - 1, j] - ni
                    if (dlt >= 1.0 and up > 1) or (dlt <= -1.0 and down < -1):
                        s = 1 if dlt > 0 else -1
                        qi = q[p, i, j]
                        qm = q[p, i - 1, j]
                        qp = q[p, i + 1, j]
                        nm = npos[p, i - 1, j]
                        np_ = npos[p, i + 1, j]
                        # piecewise-parabolic prediction
                        cand = qi + s / (np_ - nm) * (
                            (ni - nm + s) * (qp - qi) / (np_ - ni)
                            + (np_ - ni - s) * (qi - qm) / (ni - nm)
                        )
                        if qm < cand < qp:
                            q[p, i, j] = cand
                        else:  # linear prediction
                            if s > 0:
                                q[p, i, j] = qi + (qp - qi) / (np_ - ni)
                            else:
                                q[p, i, j] = qi - (qm - qi) / (nm - ni)
                        npos[p, i, j] = ni + s
