"""Linear operators: adjointness for every registered operator, cross-checks of the blur
against direct convolutions, spectral norms, kernels, masks, and bad-input errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from conftest import DATA, one_line

from operators import (
    OPERATORS,
    Blur,
    Composition,
    Identity,
    Inpainting,
    adjoint_error,
    box_mask,
    build_operator,
    gaussian_kernel,
    load_kernel,
    load_mask,
    motion_kernel,
    power_norm_squared,
    random_mask,
    uniform_kernel,
)
from operators.functional import pad2d, pad2d_adjoint

H, W = 16, 17  # odd/even, non-square on purpose

# ---------------------------------------------------------------- registry-parametrized cases
# (config, needs_rgb): every entry goes through build_operator, so the registry is exercised.
CASES = {
    "identity": {"type": "identity"},
    **{
        f"blur_uniform_{b}": {"type": "blur", "kernel": "uniform", "size": 5, "boundary": b}
        for b in ("circular", "reflect", "replicate", "zero")
    },
    **{
        f"blur_motion_{b}": {"type": "blur", "kernel": "motion", "size": 7, "seed": 3, "boundary": b}
        for b in ("circular", "reflect", "replicate", "zero")
    },
    # thin kernels: one-sided zero-width pads (where deepinv's padded transpose fails)
    **{
        f"blur_7x1_{b}": {"type": "blur", "kernel": np.full((7, 1), 1 / 7), "boundary": b}
        for b in ("circular", "reflect", "replicate", "zero")
    },
    **{
        f"blur_1x2_{b}": {"type": "blur", "kernel": np.array([[0.25, 0.75]]), "boundary": b}
        for b in ("circular", "reflect", "replicate", "zero")
    },
    "blur_gaussian_file": {"type": "blur", "kernel": str(DATA / "kernels" / "gaussian_7.png"), "boundary": "reflect"},
    "inpainting_random": {"type": "inpainting", "mask": "random", "missing_ratio": 0.4, "seed": 1},
    "inpainting_box": {"type": "inpainting", "mask": "box", "box": [2, 3, 5, 6]},
    "blur_inpainting": {
        "type": "blur_inpainting",
        "blur": {"kernel": "gaussian", "size": 5, "std": 1.0, "boundary": "replicate"},
        "inpainting": {"mask": "random", "missing_ratio": 0.5, "seed": 2},
    },
    "list_blur_then_mask": [
        {"type": "blur", "kernel": "uniform", "size": 3, "boundary": "zero"},
        {"type": "inpainting", "mask": "box", "box": [0, 0, 4, 4]},
    ],
}


def _types(cfg) -> set:
    return set().union(*(_types(c) for c in cfg)) if isinstance(cfg, list) else {cfg["type"]}


def test_cases_cover_every_registered_operator():
    assert set().union(*(_types(c) for c in CASES.values())) == set(OPERATORS)


def _build(cfg, C):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNG kernel normalisation, even kernel sizes
        return build_operator(cfg, (C, H, W))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_adjointness(name, C, dtype, tol, gen):
    op = _build(CASES[name], C)
    x = torch.rand(2, C, H, W, generator=gen, dtype=dtype)
    y = torch.rand(2, C, H, W, generator=gen, dtype=dtype)
    assert op.A(x).shape == x.shape and op.A(x).dtype == dtype
    assert op.A_adjoint(y).dtype == dtype
    assert adjoint_error(op, x, y) < tol
    # batch elements are independent
    assert torch.allclose(op.A(x)[1:], op.A(x[1:]), atol=1e-6)


def test_adjoint_error_detects_wrong_adjoint(gen):
    class Wrong(Blur):
        def A_adjoint(self, y):  # convolution instead of correlation: wrong for asymmetric k
            return self.A(y)

    op = Wrong(motion_kernel(7, generator=gen), boundary="zero")
    x, y = torch.rand(2, 1, H, W, generator=gen, dtype=torch.float64).unbind(0)
    assert adjoint_error(op, x[None], y[None]) > 1e-3


# ---------------------------------------------------------------- blur cross-checks
def _roll_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Direct circular convolution, origin (h//2, w//2): y = sum_mn k[m,n] x[i-m+ch, j-n+cw]."""
    h, w = k.shape
    out = torch.zeros_like(x)
    for m in range(h):
        for n in range(w):
            out += k[m, n] * torch.roll(x, shifts=(m - h // 2, n - w // 2), dims=(-2, -1))
    return out


@pytest.mark.parametrize("ks", [(5, 5), (7, 3), (4, 4), (1, 6)])
def test_fft_circular_matches_direct(ks, gen):
    k = torch.rand(*ks, generator=gen, dtype=torch.float64)
    k /= k.sum()
    x = torch.rand(2, 3, H, W, generator=gen, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fft = Blur(k, boundary="circular", image_shape=(3, H, W))
        direct = Blur(k, boundary="circular")  # padded path (no image_shape)
    ref = _roll_conv(x, k)
    assert torch.allclose(fft.A(x), ref, atol=1e-12)
    assert torch.allclose(direct.A(x), ref, atol=1e-12)
    assert torch.allclose(fft.A_adjoint(x), direct.A_adjoint(x), atol=1e-12)


@pytest.mark.parametrize(
    "boundary, scipy_mode",
    [("circular", "wrap"), ("reflect", "mirror"), ("replicate", "nearest"), ("zero", "constant")],
)
def test_blur_matches_scipy_convolve(boundary, scipy_mode, gen):
    k = motion_kernel(7, generator=gen)
    x = torch.rand(1, 1, H, W, generator=gen, dtype=torch.float64)
    ref = ndi.convolve(x[0, 0].numpy(), k.numpy(), mode=scipy_mode, cval=0.0)
    out = Blur(k, boundary=boundary).A(x)[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize("boundary", ["circular", "reflect", "replicate", "zero"])
def test_blur_interior_is_plain_convolution(boundary, gen):
    """Away from the border every boundary rule gives the valid convolution."""
    from scipy.signal import convolve2d

    k = torch.rand(5, 3, generator=gen, dtype=torch.float64)
    k /= k.sum()
    x = torch.rand(1, 1, H, W, generator=gen, dtype=torch.float64)
    valid = convolve2d(x[0, 0].numpy(), k.numpy(), mode="valid")  # [H-4, W-2]
    out = Blur(k, boundary=boundary).A(x)[0, 0].numpy()
    np.testing.assert_allclose(out[2 : H - 2, 1 : W - 1], valid, atol=1e-12)


def test_rgb_per_channel_kernel(gen):
    ks = torch.stack([uniform_kernel(3), gaussian_kernel(3, 0.7), motion_kernel(3, generator=gen)])
    x = torch.rand(2, 3, H, W, generator=gen, dtype=torch.float64)
    op = Blur(ks, boundary="reflect")
    assert op.channels == 3
    for c in range(3):
        single = Blur(ks[c], boundary="reflect").A(x[:, c : c + 1])
        assert torch.allclose(op.A(x)[:, c : c + 1], single, atol=1e-12)


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
@pytest.mark.parametrize("pads", [((0, 3), (2, 0)), ((5, 5), (1, 2)), ((20, 1), (0, 0))])
def test_pad_matches_torch_and_adjoint(mode, pads, gen):
    x = torch.rand(2, 3, 6, 7, generator=gen, dtype=torch.float64)
    (t, b), (l, r) = pads
    p = pad2d(x, (t, b), (l, r), mode)
    if max(t, b) < 6 and max(l, r) < 7:  # torch's own F.pad limits
        ref = torch.nn.functional.pad(x, (l, r, t, b), mode=mode)
        assert torch.equal(p, ref)
    y = torch.rand_like(p)
    lhs = (p * y).sum()
    rhs = (x * pad2d_adjoint(y, (t, b), (l, r), mode)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-12


# ---------------------------------------------------------------- spectral norms
@pytest.mark.parametrize(
    "op, expected",
    [
        (Blur(uniform_kernel(9), boundary="circular", image_shape=(1, 32, 32)), 1.0),
        (Blur(gaussian_kernel(7, 1.6), boundary="circular", image_shape=(1, 32, 32)), 1.0),
        (Inpainting(random_mask((32, 32), 0.5, generator=torch.Generator().manual_seed(0))), 1.0),
        (Identity(), 1.0),
        (Inpainting(torch.zeros(1, 32, 32)), 0.0),
    ],
)
def test_norm_squared_analytic(op, expected, gen):
    """Generic power iteration and the operator's own (exact) norm both match the analytic value."""
    shape = (1, 1, 32, 32)
    assert power_norm_squared(op, shape, n_iter=500, generator=gen) == pytest.approx(expected, abs=1e-4)
    assert op.norm_squared(shape, generator=gen) == pytest.approx(expected, abs=1e-12)


def test_circular_norm_matches_dense_matrix(gen):
    """Exact circular formula and power iteration vs the dense matrix's largest singular value."""
    op = Blur(torch.tensor([[0.1, 0.6, 0.3]]), boundary="circular", image_shape=(1, 6, 8))
    n = 48
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 1, 6, 8)
    M = torch.stack([op.A(e).flatten() for e in eye], 1)
    exact = torch.linalg.matrix_norm(M, ord=2).item() ** 2
    assert op.norm_squared((1, 1, 6, 8)) == pytest.approx(exact, rel=1e-12)
    assert power_norm_squared(op, (1, 1, 6, 8), n_iter=3000, tol=1e-14, generator=gen) == pytest.approx(exact, rel=1e-8)


def test_norm_squared_zero_boundary_below_one_and_composition(gen):
    blur = Blur(uniform_kernel(5), boundary="zero")
    nb = blur.norm_squared((1, 1, 32, 32), n_iter=500, generator=gen)
    assert 0.9 < nb < 1.0
    comp = Composition(blur, Inpainting(box_mask((32, 32), (8, 8, 16, 16))))
    assert comp.norm_squared((1, 1, 32, 32), n_iter=500, generator=gen) <= nb + 1e-6


def test_norm_squared_matches_dense_matrix(gen):
    op = Blur(motion_kernel(5, generator=gen), boundary="reflect")
    n = 8 * 9
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 1, 8, 9)
    M = torch.stack([op.A(e).flatten() for e in eye], 1)
    exact = torch.linalg.matrix_norm(M, ord=2).item() ** 2
    assert op.norm_squared((1, 1, 8, 9), n_iter=2000, tol=1e-12, generator=gen) == pytest.approx(exact, rel=1e-6)


# ---------------------------------------------------------------- exact prox of the data term
@pytest.mark.parametrize("name", sorted(CASES))
def test_prox_l2_matches_dense_solve_or_is_refused(name, gen):
    """Where an operator claims an exact prox, ``(I + gamma A^T A)^{-1}(z + gamma A^T y)`` by a
    dense solve must match it to 1e-10 (float64); elsewhere prox_l2 raises a one-line error."""
    C, h, w = 1, 8, 9  # small enough for a dense solve, large enough for every kernel and box
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op = build_operator(CASES[name], (C, h, w))
    z = torch.rand(2, C, h, w, generator=gen, dtype=torch.float64)
    y = op.A(torch.rand(2, C, h, w, generator=gen, dtype=torch.float64))
    if not op.has_exact_prox:
        with pytest.raises(NotImplementedError, match="prox"):
            op.prox_l2(z, y, 3.0)
        return
    n = C * h * w
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, C, h, w)
    M = torch.stack([op.A(e).flatten() for e in eye], 1)
    for gamma in (0.5, 3.0, 1e4):
        got = op.prox_l2(z, y, gamma)
        lhs = torch.eye(n, dtype=torch.float64) + gamma * M.T @ M
        for b in range(2):
            want = torch.linalg.solve(lhs, z[b].flatten() + gamma * M.T @ y[b].flatten())
            assert torch.allclose(got[b].flatten(), want, atol=1e-10, rtol=0), (name, gamma)


def test_fill_missing_keeps_observed_pixels_and_interpolates_smooth_images(gen):
    from operators.inpainting import fill_missing

    h, w = 48, 40
    r, c = torch.meshgrid(torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, w, dtype=torch.float64), indexing="ij")
    x = (0.5 + 0.3 * torch.sin(3 * r) * torch.cos(2 * c))[None, None]
    mask = random_mask((h, w), 0.8, generator=gen)
    op = Inpainting(mask)
    y = op.A(x)
    out = fill_missing(y, op.mask)
    m = op.mask.expand_as(x).bool()
    assert torch.equal(out[m], y[m])
    # a smooth image: the local weighted mean is close (measured RMS 0.0072-0.0081 over 5 masks;
    # the max, 0.03-0.11, sits at the corners where the average is one-sided); zeros: RMS ~0.5
    rms = float((out - x)[~m].pow(2).mean().sqrt())
    assert rms < 0.015, rms
    # a hole wider than every scale: its far inside gets the mean of the observed pixels
    box = torch.ones(1, 200, 200, dtype=torch.float64)
    box[:, 20:180, 20:180] = 0
    out = fill_missing(torch.full((1, 1, 200, 200), 0.7, dtype=torch.float64) * box, box)
    assert torch.allclose(out, torch.full_like(out, 0.7))


# ---------------------------------------------------------------- kernels and masks
def test_kernels_basic(gen):
    for k in (uniform_kernel(5), gaussian_kernel(7, 1.6), motion_kernel(9, generator=gen)):
        assert k.dtype == torch.float64 and float(k.sum()) == pytest.approx(1.0) and k.min() >= 0
    g = gaussian_kernel(7, 1.6)
    assert torch.allclose(g, g.flip(0)) and torch.allclose(g, g.T) and g.argmax() == 24


def test_motion_kernel_seeded():
    a = motion_kernel(9, generator=torch.Generator().manual_seed(5))
    b = motion_kernel(9, generator=torch.Generator().manual_seed(5))
    c = motion_kernel(9, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    straight = motion_kernel(9, generator=torch.Generator().manual_seed(0), curvature=0.0)
    assert (straight > 1e-12).sum() < 9 * 3  # a thin line


def test_shipped_kernels_and_mask_regenerate(data_dir):
    k = load_kernel(data_dir / "kernels" / "motion_9.npy")
    assert torch.allclose(k, motion_kernel(9, generator=torch.Generator().manual_seed(0)))
    g = load_kernel(str(data_dir / "kernels" / "gaussian_7.png"))  # silent normalisation
    assert torch.allclose(g, gaussian_kernel(7, 1.6), atol=2e-3)
    m = load_mask(data_dir / "masks" / "box_mask_64.png")
    assert torch.equal(m, box_mask((256, 256), (96, 96, 64, 64)))


def test_random_mask_exact_ratio_and_seed():
    m = random_mask((20, 30), 0.25, generator=torch.Generator().manual_seed(0))
    assert m.shape == (1, 20, 30) and int((m == 0).sum()) == 150
    m2 = random_mask((20, 30), 0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m, m2)
    m3 = random_mask((3, 20, 30), 0.25, generator=torch.Generator().manual_seed(0))
    assert m3.shape == (3, 20, 30) and not torch.equal(m3[0], m3[1])


# ---------------------------------------------------------------- bad input: one-line errors
@pytest.mark.parametrize(
    "kernel, match",
    [
        (np.array([[0.5, np.nan, 0.5]]), "NaN/Inf"),
        (np.array([[0.5, np.inf, 0.5]]), "NaN/Inf"),
        (np.array([[0.75, -0.25, 0.5]]), "negative"),
        (np.zeros((3, 3)), "sums to 0"),
        (np.ones((2, 2, 2, 2)), "shape"),
        ("not_a_kernel_name", "not valid"),
    ],
)
def test_bad_kernel_errors(kernel, match):
    with pytest.raises(ValueError, match=match) as exc:
        build_operator({"type": "blur", "kernel": kernel}, (1, H, W))
    assert "kernel" in one_line(exc)


def test_kernel_not_normalised_warns_and_normalises():
    with pytest.warns(UserWarning, match="normalised"):
        op = Blur(np.ones((3, 3)), boundary="zero")
    assert float(op.kernel.sum()) == pytest.approx(1.0)


def test_even_kernel_warns_with_convention():
    with pytest.warns(UserWarning, match=r"even; its origin is pixel \(2, 2\)"):
        Blur(np.full((4, 4), 1 / 16), boundary="reflect")


def test_kernel_larger_than_image():
    with pytest.raises(ValueError, match="larger than the image") as exc:
        Blur(uniform_kernel(9), image_shape=(1, 8, 8))
    one_line(exc)
    with pytest.raises(ValueError, match="larger than the image"):
        Blur(uniform_kernel(9), boundary="reflect").A(torch.rand(1, 1, 8, 20))


def test_channel_mismatch_kernel_and_mask(gen):
    rgb_kernel = torch.stack([uniform_kernel(3)] * 3)
    with pytest.raises(ValueError, match="3 channels but the image has 1") as exc:
        Blur(rgb_kernel, image_shape=(1, H, W))
    one_line(exc)
    with pytest.raises(ValueError, match="does not match mask") as exc:
        Inpainting(torch.ones(3, H, W)).A(torch.rand(1, 1, H, W))
    one_line(exc)


def test_bad_mask_errors(tmp_path):
    with pytest.raises(ValueError, match="not 0 or 1") as exc:
        Inpainting(torch.full((H, W), 0.5))
    assert "mask" in one_line(exc)
    with pytest.raises(ValueError, match="does not match mask") as exc:
        build_operator({"type": "inpainting", "mask": np.ones((H + 1, W))}, (1, H, W))
    one_line(exc)
    with pytest.raises(ValueError, match="does not fit"):
        box_mask((H, W), (10, 10, 10, 10))
    with pytest.raises(ValueError, match="missing_ratio"):
        random_mask((H, W), 1.5, generator=torch.Generator())


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy") as exc:
        build_operator({"type": "blur", "kernel": str(tmp_path / "nope.npy")}, (1, H, W))
    one_line(exc)
    bad = tmp_path / "garbage.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="garbage.png") as exc:
        build_operator({"type": "inpainting", "mask": str(bad)}, (1, H, W))
    one_line(exc)


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"type": "deblur"}, r"operator.type: 'deblur' is not valid; use one of \['blur', 'blur_inpainting', 'identity', 'inpainting'\]"),
        ({"kernel": "uniform"}, "operator.type: None is not valid"),
        ({"type": "blur", "kernel": "uniform"}, r"operator.size: missing"),
        ({"type": "blur", "kernel": "uniform", "size": 3, "sizee": 3}, "unknown keys"),
        ({"type": "blur", "kernel": "uniform", "size": 3, "boundary": "periodic"}, "boundary"),
        ({"type": "blur", "kernel": "motion", "size": 5}, r"operator.seed: missing"),
        ({"type": "inpainting", "mask": "random", "missing_ratio": 0.5}, r"operator.seed: missing"),
        ({"type": "inpainting", "mask": "circle"}, "not valid"),
        ({"type": "blur_inpainting", "blur": {"kernel": "uniform", "size": 3}}, "operator.inpainting: missing"),
    ],
)
def test_bad_operator_config(cfg, match):
    with pytest.raises(ValueError, match=match) as exc:
        build_operator(cfg, (1, H, W))
    one_line(exc)


def test_operator_config_seed_from_generator():
    cfg = {"type": "inpainting", "mask": "random", "missing_ratio": 0.5}
    a = build_operator(cfg, (1, H, W), generator=torch.Generator().manual_seed(1))
    b = build_operator(cfg, (1, H, W), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.mask, b.mask)
