# Reference resizes made with Pillow (Debian 12's python3-pil 9.4.0), the resampler diffusers' image processors call:
# Image.resize((w, h), Image.LANCZOS) on an 8-bit RGB image. Run: /usr/bin/python3 make_fixture.py
import numpy as np
from PIL import Image

rng = np.random.default_rng(20261127)
base = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
# Smooth structure plus hard edges, so both the filter's lobes and its clipping show.
yy, xx = np.mgrid[0:17, 0:23]
base[..., 0] = (xx * 11) % 256
base[4:12, 6:15, 1] = 255
Image.fromarray(base, "RGB").save("source.png")
for w, h in [(11, 8), (40, 31), (23, 40), (7, 17), (64, 64), (5, 3)]:
    Image.fromarray(base, "RGB").resize((w, h), Image.LANCZOS).save(f"lanczos_{w}x{h}.png")
