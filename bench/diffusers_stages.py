#!/usr/bin/env python3
"""The reference's time for the stages that build/bench_pipeline measures, on the same configs and shapes.

Random weights built from tests/data/configs (no weight files), the real 0.6B SANA-Sprint configuration:
  text:        transformers' Gemma2Model over the whole padded sequence (instruction + prompt, padded), as
               diffusers' SanaSprintPipeline runs it on every call;
  transformer: diffusers' SanaTransformer2DModel, one step with the 300 prompt positions and their mask, as the
               pipeline calls it (the TrigFlow arithmetic around it is elementwise and left out);
  vae:         diffusers' AutoencoderDC decode.
Median of --runs after one warm-up, with the device synchronised around each run. Needs torch, transformers and
the diffusers sources (PYTHONPATH=.../diffusers/src); Pillow is only imported by diffusers, so a stand-in is put
in its place when it is missing (nothing here touches images). See docs/PERFORMANCE.md, "CUDA".

  python3 bench/diffusers_stages.py --device cuda --dtype bf16 --sizes 512,1024 --runs 10
"""
import argparse
import json
import os
import statistics
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pil_stand_in():
    """Registers placeholder PIL modules: diffusers imports Pillow at import time only for its image helpers."""

    class Placeholder(type):  # any attribute of a placeholder is another placeholder class
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Placeholder(name, (), {})

    stub = Placeholder("PIL", (), {})
    for name in ("PIL", "PIL.Image", "PIL.ImageOps", "PIL.ImageFilter", "PIL.ImageDraw", "PIL.PngImagePlugin"):
        module = types.ModuleType(name)
        module.__getattr__ = lambda attribute: getattr(stub, attribute)
        sys.modules[name] = module
    pil = sys.modules["PIL"]
    pil.__version__ = "10.0.0"
    for sub in ("Image", "ImageOps", "ImageFilter", "ImageDraw", "PngImagePlugin"):
        setattr(pil, sub, sys.modules["PIL." + sub])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=os.path.join(ROOT, "tests/data/configs/Sana_Sprint_0.6B_1024px_diffusers"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--sizes", default="512,1024")
    p.add_argument("--stages", default="text,transformer,vae")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--chi-tokens", type=int, default=245, help="as bench_pipeline: the instruction's token estimate")
    p.add_argument("--prompt-tokens", type=int, default=13)
    p.add_argument("--cudnn-benchmark", default="on", choices=["on", "off"],
                   help="on, as sana-sprint's runtime sets it; off is PyTorch's default")
    a = p.parse_args()

    try:
        import PIL  # noqa: F401
    except ImportError:
        pil_stand_in()
    import torch

    device = torch.device(a.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as in our fixture checks
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = a.cudnn_benchmark == "on"
    sizes = [int(s) for s in a.sizes.split(",")]
    stages = set(a.stages.split(","))
    print(f"torch {torch.__version__}, {a.dtype} on {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""), flush=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(what, fn):
        fn()
        sync()
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        sec = statistics.median(times)
        print(f"{what:<44} median {sec * 1e3:9.1f} ms ({a.runs} runs)", flush=True)
        return sec

    def config(part):
        with open(os.path.join(a.configs, part, "config.json")) as f:
            return json.load(f)

    def build(make):
        t0 = time.perf_counter()
        with torch.device(device):
            model = make().to(dtype).eval()
        print(f"  built in {time.perf_counter() - t0:.1f} s", flush=True)
        return model

    seconds = {}
    L = a.chi_tokens + 298  # the padded length the reference encodes: instruction + 300 - 2
    with torch.inference_mode():
        if "text" in stages:
            from transformers import Gemma2Config, Gemma2Model

            cfg = Gemma2Config.from_dict(config("text_encoder"))
            te = build(lambda: Gemma2Model(cfg))
            real = a.chi_tokens + a.prompt_tokens
            ids = torch.randint(4, cfg.vocab_size, (1, L), device=device)
            ids[:, real:] = 0
            mask = torch.zeros(1, L, dtype=torch.long, device=device)
            mask[:, :real] = 1
            seconds["text"] = timed(f"text encoder, whole padded sequence ({L})",
                                    lambda: te(input_ids=ids, attention_mask=mask))
            del te
        if "transformer" in stages:
            from diffusers import SanaTransformer2DModel

            tcfg = config("transformer")
            tr = build(lambda: SanaTransformer2DModel.from_config(tcfg))
            embeds = torch.randn(1, 300, tcfg["caption_channels"], device=device, dtype=dtype)
            emask = torch.zeros(1, 300, dtype=torch.long, device=device)
            emask[:, : 1 + a.prompt_tokens] = 1
            t = torch.full((1,), 0.5, device=device)
            g = torch.full((1,), 4.5, device=device)
            for size in sizes:
                lat = size // 32
                x = torch.randn(1, tcfg["in_channels"], lat, lat, device=device, dtype=dtype)
                seconds[f"transformer{size}"] = timed(
                    f"transformer step {size}^2 (300 text tokens)",
                    lambda: tr(x, encoder_hidden_states=embeds, encoder_attention_mask=emask, guidance=g, timestep=t,
                               return_dict=False))
            del tr
        if "vae" in stages:
            from diffusers import AutoencoderDC

            vcfg = config("vae")
            vae = build(lambda: AutoencoderDC.from_config(vcfg))
            factor = 2 ** (len(vcfg["decoder_block_out_channels"]) - 1)
            for size in sizes:
                lat = size // factor
                z = torch.randn(1, vcfg["latent_channels"], lat, lat, device=device, dtype=dtype)
                seconds[f"vae{size}"] = timed(f"vae decode {size}^2", lambda: vae.decode(z, return_dict=False))

    if "text" in seconds:
        for size in sizes:
            s, d = seconds.get(f"transformer{size}"), seconds.get(f"vae{size}")
            if s is None or d is None:
                continue
            for steps in (1, 2, 4):
                total = seconds["text"] + steps * s + d
                print(f"end to end {size}^2, {steps} step{'s' if steps > 1 else ''}: {total:.2f} s = text "
                      f"{seconds['text']:.3f} + {steps} x step {s:.3f} + decode {d:.3f}", flush=True)


if __name__ == "__main__":
    main()
