"""Image I/O: scaling per dtype, layouts, channel conversion, round trips, errors."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from conftest import one_line
from PIL import Image

from pnp_imaging.imageio import read_image, read_observation, write_image


def test_read_shipped_images(data_dir):
    cam = read_image(data_dir / "cameraman.png")
    assert cam.shape == (1, 1, 256, 256) and cam.dtype == torch.float32
    assert 0 <= cam.min() and cam.max() <= 1 and cam.std() > 0.1
    cof = read_image(data_dir / "coffee_128.png")
    assert cof.shape == (1, 3, 128, 128)
    gray = read_image(data_dir / "coffee_128.png", channels=1)
    luma = 0.299 * cof[:, 0] + 0.587 * cof[:, 1] + 0.114 * cof[:, 2]
    assert torch.allclose(gray[:, 0], luma, atol=1e-6)
    cam3 = read_image(data_dir / "cameraman.png", channels=3)
    assert cam3.shape == (1, 3, 256, 256) and torch.equal(cam3[:, 0], cam3[:, 2])


def test_uint8_and_uint16_scaling(tmp_path):
    a8 = np.array([[0, 51, 255]], np.uint8)
    Image.fromarray(a8).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png")[0, 0].numpy(), a8 / 255.0, atol=1e-7)
    a16 = np.array([[0, 1000, 65535]], np.uint16)
    Image.fromarray(a16).save(tmp_path / "b.png")
    np.testing.assert_allclose(read_image(tmp_path / "b.png")[0, 0].numpy(), a16 / 65535.0, atol=1e-7)
    rgb16 = np.random.default_rng(0).integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", rgb16)
    x = read_image(tmp_path / "c.tif")
    assert x.shape == (1, 3, 5, 6)
    np.testing.assert_allclose(x[0].numpy(), np.moveaxis(rgb16, -1, 0) / 65535.0, atol=1e-7)


def test_jpeg_and_rgba(tmp_path):
    rgb = np.full((8, 8, 3), 128, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    x = read_image(tmp_path / "a.jpg")
    assert x.shape == (1, 3, 8, 8) and torch.allclose(x, torch.full_like(x, 128 / 255), atol=3 / 255)
    Image.fromarray(np.full((4, 5, 4), 200, np.uint8)).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").shape == (1, 3, 4, 5)  # alpha dropped


@pytest.mark.parametrize(
    "arr, shape",
    [
        (np.zeros((5, 6), np.float32), (1, 1, 5, 6)),
        (np.zeros((3, 5, 6), np.float64), (1, 3, 5, 6)),
        (np.zeros((5, 6, 3), np.float32), (1, 3, 5, 6)),
        (np.zeros((1, 3, 5, 6), np.float32), (1, 3, 5, 6)),
        (np.zeros((5, 6), np.uint8), (1, 1, 5, 6)),
    ],
)
def test_npy_layouts(tmp_path, arr, shape):
    np.save(tmp_path / "a.npy", arr)
    x = read_image(tmp_path / "a.npy")
    assert x.shape == shape and x.dtype == torch.float32


def test_png_round_trip_and_clipping(tmp_path, gen):
    x = torch.rand(1, 3, 9, 7, generator=gen)
    write_image(tmp_path / "x.png", x)
    back = read_image(tmp_path / "x.png")
    assert (back - x).abs().max() <= 0.5 / 255 + 1e-6
    y = torch.tensor([[[[-0.5, 0.5, 1.5]]]])
    write_image(tmp_path / "y.png", y)
    assert torch.allclose(read_image(tmp_path / "y.png"), torch.tensor([[[[0.0, 128 / 255, 1.0]]]]))


def test_npy_round_trip_exact_and_unclipped(tmp_path, gen):
    y = torch.randn(1, 1, 6, 6, generator=gen)
    write_image(tmp_path / "y.npy", y)
    assert torch.equal(read_observation(tmp_path / "y.npy"), y)


def test_float_outside_range_warns_but_observation_does_not(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[0.0, 2.0]], np.float32))
    with pytest.warns(UserWarning, match=r"outside \[0, 1\]; rescale"):
        read_image(tmp_path / "a.npy")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_observation(tmp_path / "a.npy")


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png") as exc:
        read_image(tmp_path / "missing.png")
    one_line(exc)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="bad.png") as exc:
        read_image(tmp_path / "bad.png")
    one_line(exc)
    (tmp_path / "bad.npy").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.npy") as exc:
        read_image(tmp_path / "bad.npy")
    one_line(exc)
    with pytest.raises(ValueError, match="unsupported file type") as exc:
        read_image(tmp_path / "a.bmp")
    one_line(exc)
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN") as exc:
        read_observation(tmp_path / "nan.npy")
    one_line(exc)
    np.save(tmp_path / "int.npy", np.array([[-3, 7]], np.int64))
    with pytest.raises(ValueError, match="uint8/uint16") as exc:
        read_image(tmp_path / "int.npy")
    one_line(exc)
    np.save(tmp_path / "4d.npy", np.zeros((2, 2, 5, 5)))
    with pytest.raises(ValueError, match="cannot interpret") as exc:
        read_image(tmp_path / "4d.npy")
    one_line(exc)
    with pytest.raises(ValueError, match="channels") as exc:
        read_image(tmp_path / "int.npy", channels=2)
    one_line(exc)
    with pytest.raises(ValueError, match="use .png or .npy") as exc:
        write_image(tmp_path / "x.tif", torch.zeros(1, 1, 2, 2))
    one_line(exc)
    with pytest.raises(FileNotFoundError, match="does not exist") as exc:
        write_image(tmp_path / "nodir" / "x.png", torch.zeros(1, 1, 2, 2))
    one_line(exc)
