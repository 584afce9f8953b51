"""The Python package against `sana-sprint generate`: the same bytes for the shipped Sprint and teacher folders (text
to image, ControlNet, img2img), the three output types, cancellation from another thread, and errors as exceptions.

Run by CTest (tests/CMakeLists.txt) with SANA_SPRINT_LIBRARY, SANA_CLI, SANA_MODELS_DIR and SANA_CONTROL_IMAGE set.
"""
import json
import os
import struct
import subprocess
import tempfile
import threading
import unittest

import numpy as np
from PIL import Image

from sana_sprint import RawImage, SanaSprintCancelled, SanaSprintError, SanaSprintPipeline

CLI = os.environ["SANA_CLI"]
SPRINT = os.path.join(os.environ["SANA_MODELS_DIR"], "sana-sprint-shapes")
TEACHER = os.path.join(os.environ["SANA_MODELS_DIR"], "sana-shapes-teacher")
CONTROL = os.environ["SANA_CONTROL_IMAGE"]


def cli_image(tmp, name, *args):
    out = os.path.join(tmp, name + ".png")
    subprocess.run([CLI, "generate", *args, "-o", out], check=True, stderr=subprocess.DEVNULL)
    with Image.open(out) as im:
        return im.convert("RGB")


class SameBytesAsTheCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.sprint = SanaSprintPipeline.from_pretrained(SPRINT)

    @classmethod
    def tearDownClass(cls):
        cls.sprint.close()
        cls.tmp.cleanup()

    def assertSameImage(self, cli, ours):
        self.assertEqual(cli.size, ours.size)
        self.assertEqual(cli.tobytes(), ours.tobytes(), "the package's image differs from the CLI's")

    def test_sprint(self):
        self.assertEqual(self.sprint.pipeline_class, "SanaSprintPipeline")
        for steps in (1, 2):
            ours = self.sprint("two red circles above a blue square", num_inference_steps=steps, seed=7).images[0]
            cli = cli_image(self.tmp.name, "sprint%d" % steps, "-m", SPRINT, "-p",
                            "two red circles above a blue square", "-s", "7", "--steps", str(steps))
            self.assertSameImage(cli, ours)

    def test_tiny_decoder(self):
        ours = self.sprint("a small yellow star", seed=5, decoder="tiny").images[0]
        cli = cli_image(self.tmp.name, "tiny", "-m", SPRINT, "-p", "a small yellow star", "-s", "5", "--decoder", "tiny")
        self.assertSameImage(cli, ours)

    def test_teacher(self):
        with SanaSprintPipeline.from_pretrained(TEACHER) as teacher:
            ours = teacher("a green triangle", negative_prompt="blurry", num_inference_steps=6, seed=3).images[0]
        cli = cli_image(self.tmp.name, "teacher", "-m", TEACHER, "-p", "a green triangle", "-s", "3", "--steps", "6",
                        "--negative-prompt", "blurry")
        self.assertSameImage(cli, ours)

    def test_controlnet_and_img2img(self):
        ours = self.sprint("a red circle", seed=11, control_image=CONTROL, control_preprocess="invert",
                           controlnet_conditioning_scale=0.7).images[0]
        cli = cli_image(self.tmp.name, "control", "-m", SPRINT, "-p", "a red circle", "-s", "11", "--control-image",
                        CONTROL, "--control-preprocess", "invert", "--control-scale", "0.7")
        self.assertSameImage(cli, ours)

        init = cli_image(self.tmp.name, "init", "-m", SPRINT, "-p", "a blue square", "-s", "5")
        ours = self.sprint("a red square", seed=12, num_inference_steps=2, image=init, strength=0.5).images[0]
        cli = cli_image(self.tmp.name, "img2img", "-m", SPRINT, "-p", "a red square", "-s", "12", "--steps", "2",
                        "--strength", "0.5", "--init-image", os.path.join(self.tmp.name, "init.png"))
        self.assertSameImage(cli, ours)
        # The same init image as a numpy array and as raw bytes gives the same picture.
        for image in (np.asarray(init), RawImage(init.width, init.height, init.tobytes())):
            again = self.sprint("a red square", seed=12, num_inference_steps=2, image=image, strength=0.5).images[0]
            self.assertSameImage(cli, again)

    def test_output_types_and_random_seed(self):
        pil = self.sprint("a red circle", seed=1).images[0]
        arr = self.sprint("a red circle", seed=1, output_type="np").images[0]
        raw = self.sprint("a red circle", seed=1, output_type="raw").images[0]
        self.assertEqual(arr.dtype, np.uint8)
        self.assertEqual(arr.shape, (pil.height, pil.width, 3))
        self.assertEqual(arr.tobytes(), pil.tobytes())
        self.assertEqual(raw.data, pil.tobytes())
        out = self.sprint("a red circle", seed=-1)
        self.assertGreaterEqual(out.seeds[0], 0)
        again = self.sprint("a red circle", seed=out.seeds[0]).images[0]
        self.assertEqual(again.tobytes(), out.images[0].tobytes())


def write_safetensors(path, tensors):
    """A float32 .safetensors file (the format's header, then the data), for the LoRA test."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


class Loras(unittest.TestCase):
    def test_lora_same_bytes_as_the_cli(self):
        with open(os.path.join(SPRINT, "transformer", "config.json")) as f:
            config = json.load(f)
        dim = config["num_attention_heads"] * config["attention_head_dim"]
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as tmp:
            lora = os.path.join(tmp, "lora.safetensors")
            write_safetensors(lora, {
                "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": rng.normal(0, 0.3, (4, dim)),
                "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight": rng.normal(0, 0.3, (dim, 4))})
            with SanaSprintPipeline.from_pretrained(SPRINT, loras=[(lora, 0.8)]) as pipe:
                ours = pipe("a red circle", seed=4).images[0]
            cli = cli_image(tmp, "lora", "-m", SPRINT, "-p", "a red circle", "-s", "4", "--lora", lora + ":0.8")
            plain = cli_image(tmp, "plain", "-m", SPRINT, "-p", "a red circle", "-s", "4")
            self.assertEqual(cli.tobytes(), ours.tobytes())
            self.assertNotEqual(plain.tobytes(), ours.tobytes())
            with self.assertRaises(SanaSprintError) as e:
                SanaSprintPipeline.from_pretrained(SPRINT, loras=[os.path.join(tmp, "missing.safetensors")])
            self.assertIn("missing.safetensors", str(e.exception))


class CancelAndErrors(unittest.TestCase):
    def test_cancel_from_another_thread(self):
        with SanaSprintPipeline.from_pretrained(TEACHER) as teacher:
            stages = []

            def progress(stage, seconds):
                stages.append(stage)
                if stage == "step 1/8":
                    worker = threading.Thread(target=lambda: stages.append(teacher.cancel()))
                    worker.start()
                    worker.join()

            with self.assertRaises(SanaSprintCancelled):
                teacher("a red circle", num_inference_steps=8, callback=progress)
            self.assertEqual(stages[-2:], ["step 1/8", True])
            with self.assertRaises(SanaSprintCancelled):
                teacher("a red circle", callback=lambda stage, seconds: True)
            self.assertFalse(teacher.cancel())  # nothing running
            self.assertEqual(len(teacher("a red circle", num_inference_steps=2).images), 1)

    def test_callback_exception_reaches_the_caller(self):
        with SanaSprintPipeline.from_pretrained(SPRINT) as pipe:
            def boom(stage, seconds):
                raise KeyError("from the callback")
            with self.assertRaises(KeyError):
                pipe("a red circle", callback=boom)

    def test_errors_carry_the_library_message(self):
        with self.assertRaises(SanaSprintError) as e:
            SanaSprintPipeline.from_pretrained("/no/such/folder")
        self.assertIn("/no/such/folder", str(e.exception))
        with self.assertRaises(SanaSprintError) as e:
            SanaSprintPipeline.from_pretrained(SPRINT, dtype="int4")
        self.assertIn("dtype", str(e.exception))
        pipe = SanaSprintPipeline.from_pretrained(SPRINT)
        with self.assertRaises(SanaSprintError) as e:
            pipe("a red circle", num_inference_steps=0)
        self.assertEqual(str(e.exception), "steps: must be at least 1, got 0")
        self.assertEqual(e.exception.code, 1)
        with self.assertRaises(SanaSprintError) as e:
            pipe("a red circle", width=60)
        self.assertIn("multiple of the VAE factor", str(e.exception))
        with self.assertRaises(SanaSprintError) as e:
            pipe("a red circle", image=np.zeros((8, 8, 2), np.uint8))
        self.assertIn("channels is 2", str(e.exception))
        with self.assertRaises(TypeError):
            pipe(["two", "prompts"])
        with self.assertRaises(SanaSprintError) as e:
            pipe("a red circle", output_type="latent")
        self.assertIn("output_type", str(e.exception))
        pipe.close()
        with self.assertRaises(SanaSprintError) as e:
            pipe("a red circle")
        self.assertIn("closed", str(e.exception))


if __name__ == "__main__":
    unittest.main()
