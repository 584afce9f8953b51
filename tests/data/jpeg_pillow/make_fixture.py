# Reference JPEG decodes made with Pillow (Debian 12's python3-pil 9.4.0, which decodes with libjpeg-turbo), the
# library diffusers' load_image calls: JPEG files saved by Pillow (RGB at 4:2:0 and 4:4:4, and grayscale), and the
# 8-bit RGB pixels Pillow decodes from each (Image.open(f).convert("RGB")), stored as PNG. Run: /usr/bin/python3 make_fixture.py
import numpy as np
from PIL import Image

rng = np.random.default_rng(20261207)
yy, xx = np.mgrid[0:37, 0:53]
rgb = np.zeros((37, 53, 3), dtype=np.uint8)
rgb[..., 0] = (xx * 4) % 256
rgb[..., 1] = (yy * 6) % 256
rgb[10:25, 12:40, 2] = 230
rgb = np.clip(rgb.astype(int) + rng.integers(-20, 21, size=rgb.shape), 0, 255).astype(np.uint8)
Image.fromarray(rgb, "RGB").save("rgb420.jpg", quality=90, subsampling=2)
Image.fromarray(rgb, "RGB").save("rgb444.jpg", quality=95, subsampling=0)
Image.fromarray(rgb[..., 0], "L").save("gray.jpg", quality=90)
for name in ["rgb420", "rgb444", "gray"]:
    Image.open(f"{name}.jpg").convert("RGB").save(f"{name}.decoded.png")
