"""Regenerate the small files in data/ (no download: everything comes from scikit-image's
bundled sample images and from the seeded generators in ``operators``).

Run from the repository root:  ``python data/make_data.py``
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from operators.kernels import gaussian_kernel, motion_kernel

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    from skimage import data as skdata
    from skimage.transform import resize

    # cameraman: skimage.data.camera(), 512x512 uint8 in recent scikit-image -> 256x256
    cam = skdata.camera()
    if cam.shape != (256, 256):
        cam = resize(cam, (256, 256), order=1, anti_aliasing=True, preserve_range=True)
        cam = np.clip(np.round(cam), 0, 255).astype(np.uint8)
    Image.fromarray(cam).save(os.path.join(HERE, "cameraman.png"))

    # coffee: central 400x400 crop of skimage.data.coffee() (400x600 RGB) -> 128x128
    cof = skdata.coffee()[:, 100:500]
    cof = resize(cof, (128, 128, 3), order=1, anti_aliasing=True, preserve_range=True)
    Image.fromarray(np.clip(np.round(cof), 0, 255).astype(np.uint8)).save(
        os.path.join(HERE, "coffee_128.png")
    )

    # held-out astronaut crops (skimage.data.astronaut(), 512x512 RGB; held out from every zoo
    # denoiser's training, see data.held_out in denoisers_zoo/recipes): the zoo's evaluation crop,
    # rows 0:256, cols 128:384 (denoisers_zoo.evaluate.ASTRONAUT_CROP) -- gray at full resolution
    # (skimage.color.rgb2gray, as the zoo's loader) for the 256x256 gray demos, and RGB resized
    # to 128x128 for the colour demo. Used by bench/bench_demos.py as each demo's held-out image.
    from skimage.color import rgb2gray

    ast = skdata.astronaut()[0:256, 128:384]
    gray = rgb2gray(ast) * 255.0
    Image.fromarray(np.clip(np.round(gray), 0, 255).astype(np.uint8)).save(
        os.path.join(HERE, "astronaut_gray_256.png")
    )
    ast128 = resize(ast, (128, 128, 3), order=1, anti_aliasing=True, preserve_range=True)
    Image.fromarray(np.clip(np.round(ast128), 0, 255).astype(np.uint8)).save(
        os.path.join(HERE, "astronaut_128.png")
    )

    # motion kernel, 9x9, seed 0 (operators.kernels.motion_kernel defaults)
    k = motion_kernel(9, generator=torch.Generator().manual_seed(0))
    np.save(os.path.join(HERE, "kernels", "motion_9.npy"), k.numpy())

    # Gaussian kernel 7x7, std 1.6 px, stored as 8-bit PNG scaled so its peak is 255
    # (load_kernel normalises image kernels to sum 1)
    g = gaussian_kernel(7, 1.6).numpy()
    Image.fromarray(np.round(g / g.max() * 255).astype(np.uint8)).save(
        os.path.join(HERE, "kernels", "gaussian_7.png")
    )

    # box mask for 256x256 images: 64x64 hole at rows/cols 96..159 (0 = missing, 255 = observed)
    m = np.full((256, 256), 255, np.uint8)
    m[96:160, 96:160] = 0
    Image.fromarray(m).save(os.path.join(HERE, "masks", "box_mask_64.png"))


if __name__ == "__main__":
    main()
