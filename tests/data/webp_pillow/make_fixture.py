# Reference WebP decodes made with Pillow (Debian 12's python3-pil 9.4.0 with libwebp 1.2.4), the library diffusers'
# load_image calls: WebP files saved by Pillow (lossy at quality 80, lossless, and lossy RGBA with an alpha channel),
# and the 8-bit RGB pixels Pillow decodes from each (Image.open(f).convert("RGB")), stored as PNG; source.png is the
# image the lossless file was made from. Run: /usr/bin/python3 make_fixture.py
import numpy as np
from PIL import Image

rng = np.random.default_rng(20261208)
yy, xx = np.mgrid[0:29, 0:41]
rgb = np.zeros((29, 41, 3), dtype=np.uint8)
rgb[..., 0] = (xx * 6) % 256
rgb[..., 1] = (yy * 8) % 256
rgb[8:20, 10:30, 2] = 220
rgb = np.clip(rgb.astype(int) + rng.integers(-15, 16, size=rgb.shape), 0, 255).astype(np.uint8)
Image.fromarray(rgb, "RGB").save("source.png")
Image.fromarray(rgb, "RGB").save("lossy.webp", quality=80)
Image.fromarray(rgb, "RGB").save("lossless.webp", lossless=True)
alpha = ((xx + yy) * 5 % 256).astype(np.uint8)
Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save("alpha.webp", quality=80)
for name in ["lossy", "lossless", "alpha"]:
    Image.open(f"{name}.webp").convert("RGB").save(f"{name}.decoded.png")
