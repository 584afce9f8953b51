"""SanaSprintPipeline: diffusers' call shape over one C API context (a loaded model folder)."""
import ctypes
import os

from . import _capi
from ._capi import SanaSprintError

try:
    from PIL import Image as _PILImage
except ImportError:  # Pillow is optional
    _PILImage = None
try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None


class RawImage:
    """An RGB image without Pillow or numpy: `data` holds height * width * 3 bytes, rows top to bottom."""

    def __init__(self, width, height, data, channels=3):
        self.width, self.height, self.channels, self.data = width, height, channels, data

    @property
    def size(self):
        return (self.width, self.height)


class SanaSprintPipelineOutput:
    """What a call returns: `images` (one per call) and the `seeds` that drew them (useful with seed=-1)."""

    def __init__(self, images, seeds):
        self.images, self.seeds = images, seeds


def _bytes(text, name):
    if text is None:
        return None
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    if not isinstance(text, str):
        raise TypeError("%s must be a string, got %s" % (name, type(text).__name__))
    return text.encode("utf-8")


def _c_image(image, name):
    """(sana_image, the buffer it points into) for a PIL image, a numpy uint8 array, a RawImage or a file path."""
    if isinstance(image, (str, os.PathLike)):
        if _PILImage is None:
            raise SanaSprintError("%s: reading an image file needs Pillow; pass a numpy array or RawImage" % name,
                                  _capi.ERR_INVALID_ARGUMENT)
        with _PILImage.open(image) as opened:
            image = opened.convert("RGB")
    if _PILImage is not None and isinstance(image, _PILImage.Image):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        width, height, channels, data = rgb.width, rgb.height, 3, rgb.tobytes()
    elif isinstance(image, RawImage):
        width, height, channels, data = image.width, image.height, image.channels, bytes(image.data)
    elif _np is not None and isinstance(image, _np.ndarray):
        if image.dtype != _np.uint8:
            raise SanaSprintError("%s: a numpy image must be uint8, got %s" % (name, image.dtype),
                                  _capi.ERR_INVALID_ARGUMENT)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise SanaSprintError("%s: a numpy image must be [H, W] or [H, W, C], got shape %s" % (name, image.shape),
                                  _capi.ERR_INVALID_ARGUMENT)
        height, width, channels = image.shape
        data = _np.ascontiguousarray(image).tobytes()
    else:
        raise TypeError("%s must be a PIL image, a numpy uint8 array, a RawImage or a path, got %s"
                        % (name, type(image).__name__))
    if len(data) != width * height * channels:
        raise SanaSprintError("%s: %d bytes for %dx%dx%d" % (name, len(data), width, height, channels),
                              _capi.ERR_INVALID_ARGUMENT)
    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    return _capi.sana_image(width, height, channels, buffer, 0), buffer


def _output(raw, width, height, output_type):
    if output_type == "pil":
        if _PILImage is None:
            raise SanaSprintError("output_type='pil' needs Pillow (Debian: python3-pil)", _capi.ERR_INVALID_ARGUMENT)
        return _PILImage.frombytes("RGB", (width, height), raw)
    if output_type == "np":
        if _np is None:
            raise SanaSprintError("output_type='np' needs numpy", _capi.ERR_INVALID_ARGUMENT)
        return _np.frombuffer(raw, dtype=_np.uint8).reshape(height, width, 3).copy()
    if output_type == "raw":
        return RawImage(width, height, raw)
    raise SanaSprintError("output_type must be 'pil', 'np' or 'raw', got %r" % (output_type,),
                          _capi.ERR_INVALID_ARGUMENT)


def default_output_type():
    """'pil' with Pillow, else 'np' with numpy, else 'raw'."""
    return "pil" if _PILImage is not None else ("np" if _np is not None else "raw")


class SanaSprintPipeline:
    """A loaded pipeline folder (SanaSprintPipeline or SanaPipeline, with a ControlNet when it has one).

    Calls on one pipeline run one at a time (from any thread); cancel() stops a running call from another thread.
    """

    def __init__(self, handle, lib):
        self._handle, self._lib = handle, lib

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, dtype="fp32", device="cpu", controlnet=None, vae=None,
                        quantize=None, n_threads=0, quantize_min_weights=None, loras=(), tiny_vae=None):
        """Loads a diffusers pipeline folder. dtype: fp32 | bf16 | fp16 (CUDA); device: cpu | cuda[:N];
        controlnet: a SanaControlNetModel folder to attach; vae: an AutoencoderDC folder instead of the model's vae/;
        quantize: None | "int8" | "w8a8" | "q4"; n_threads: CPU threads (0: all cores); loras: LoRA files fused into the
        weights, each a path or (path, scale) (docs/LORA.md); tiny_vae: an AutoencoderTiny folder instead of the
        model's vae_tiny/ (docs/DECODERS.md)."""
        lib = _capi.library()
        params = _capi.sana_ctx_params()
        lib.sana_ctx_params_init(ctypes.byref(params))
        keep = [_bytes(pretrained_model_name_or_path, "pretrained_model_name_or_path"), _bytes(device, "device"),
                _bytes(dtype, "dtype"), _bytes(controlnet, "controlnet"), _bytes(vae, "vae"),
                _bytes(quantize, "quantize"), _bytes(tiny_vae, "tiny_vae")]
        (params.model_dir, params.device, params.dtype, params.controlnet_dir, params.vae_dir, params.quantize,
         params.tiny_vae_dir) = keep
        params.n_threads = n_threads
        specs = [_bytes(l if isinstance(l, (str, os.PathLike)) else "%s:%r" % (os.fspath(l[0]), float(l[1])), "loras")
                 for l in loras]
        lora_array = (ctypes.c_char_p * max(1, len(specs)))(*specs)
        params.loras, params.n_loras = ctypes.cast(lora_array, ctypes.POINTER(ctypes.c_char_p)), len(specs)
        if quantize_min_weights is not None:
            params.quantize_min_weights = quantize_min_weights
        handle = lib.sana_ctx_new(ctypes.byref(params))
        if not handle:
            raise SanaSprintError(_capi.last_error(), _capi.ERR_LOAD)
        return cls(handle, lib)

    @property
    def pipeline_class(self):
        """diffusers' class name of the loaded pipeline ("SanaSprintPipeline", "SanaPipeline", ...)."""
        name = self._lib.sana_ctx_pipeline(self._live())
        if name is None:
            raise SanaSprintError(_capi.last_error(), _capi.ERR_INVALID_ARGUMENT)
        return name.decode()

    def __call__(self, prompt, negative_prompt=None, num_inference_steps=None, height=None, width=None, seed=None,
                 guidance_scale=None, max_sequence_length=None, max_timesteps=None, intermediate_timesteps=None,
                 use_complex_human_instruction=None, use_resolution_binning=None, vae_tiling=None, sampler=None,
                 image=None, strength=None, control_image=None, controlnet_conditioning_scale=None,
                 control_preprocess=None, callback=None, output_type=None, decoder=None):
        """One image. Arguments left as None take the model folder's defaults (what `sana-sprint generate` uses).
        image + strength: img2img; control_image (+ controlnet_conditioning_scale, control_preprocess none | invert
        | canny): ControlNet. callback(stage, seconds) is called at each stage; a true return cancels the call.
        seed -1 draws a random seed (returned in .seeds). decoder: "full" | "tiny" (the tiny preview decoder,
        docs/DECODERS.md). output_type: 'pil' | 'np' | 'raw' (default: the first
        available)."""
        lib = self._lib
        params = _capi.sana_gen_params()
        _capi.check(lib.sana_ctx_gen_params_init(self._live(), ctypes.byref(params)))
        keep = []  # what the struct points into, alive until the call returns

        def text(value, name):
            keep.append(_bytes(value, name))
            return keep[-1]

        if not isinstance(prompt, str):
            raise TypeError("prompt must be a string (one prompt per call), got %s" % type(prompt).__name__)
        params.prompt = text(prompt, "prompt")
        for value, field, convert in (
                (negative_prompt, "negative_prompt", lambda v: text(v, "negative_prompt")),
                (num_inference_steps, "steps", int), (height, "height", int), (width, "width", int),
                (seed, "seed", int), (guidance_scale, "guidance", float),
                (max_sequence_length, "max_sequence_length", int), (max_timesteps, "max_timesteps", float),
                (intermediate_timesteps, "intermediate_timesteps", float),
                (use_complex_human_instruction, "complex_human_instruction", int),
                (use_resolution_binning, "resolution_binning", int), (vae_tiling, "vae_tiling", int),
                (sampler, "sampler", lambda v: text(v, "sampler")), (strength, "strength", float),
                (controlnet_conditioning_scale, "control_scale", float),
                (control_preprocess, "control_preprocess", lambda v: text(v, "control_preprocess")),
                (decoder, "decoder", lambda v: text(v, "decoder"))):
            if value is not None:
                setattr(params, field, convert(value))
        for value, field in ((image, "init_image"), (control_image, "control_image")):
            if value is not None:
                c_image, buffer = _c_image(value, "image" if field == "init_image" else field)
                keep += [c_image, buffer]
                setattr(params, field, ctypes.pointer(c_image))

        callback_error = []
        if callback is not None:
            def progress(stage, seconds, _):
                try:
                    return 1 if callback(stage.decode("utf-8", "replace"), seconds) else 0
                except BaseException as e:  # noqa: B902 - re-raised below, after the library has unwound
                    callback_error.append(e)
                    return 1
            params.progress = _capi.PROGRESS_FN(progress)
            keep.append(params.progress)

        out = _capi.sana_image()
        code = lib.sana_generate(self._live(), ctypes.byref(params), ctypes.byref(out))
        if callback_error:
            raise callback_error[0]
        _capi.check(code)
        try:
            raw = ctypes.string_at(out.data, out.width * out.height * out.channels)
            width, height, used_seed = out.width, out.height, out.seed
        finally:
            lib.sana_image_free(ctypes.byref(out))
        return SanaSprintPipelineOutput([_output(raw, width, height, output_type or default_output_type())],
                                        [used_seed])

    def cancel(self):
        """Stops the call running on this pipeline (from another thread) at its next stage; True if one was running."""
        return self._lib.sana_cancel(self._live()) == 1

    def close(self):
        """Frees the weights now (a call still running on another thread finishes first)."""
        if self._handle:
            self._lib.sana_ctx_free(self._handle)
            self._handle = None

    def _live(self):
        if not self._handle:
            raise SanaSprintError("the pipeline was closed", _capi.ERR_INVALID_ARGUMENT)
        return self._handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
