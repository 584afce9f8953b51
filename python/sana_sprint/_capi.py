"""The C API of include/sana_sprint.h through ctypes: the library, its structs and its functions.

The structs mirror the header field for field; the library's own *_init functions fill their struct_size, which the
bindings check against ctypes' size of the same struct, so a header that changed without this file is caught at load.
"""
import ctypes
import ctypes.util
import os

API_VERSION = 2

OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_LOAD = 2
ERR_GENERATE = 3
ERR_CANCELLED = 4


class SanaSprintError(RuntimeError):
    """A failed library call; `code` is the C API's return code, the message its sana_last_error()."""

    def __init__(self, message, code=ERR_GENERATE):
        super().__init__(message)
        self.code = code


class SanaSprintCancelled(SanaSprintError):
    """The call was cancelled (SanaSprintPipeline.cancel, or the callback returned True)."""


class sana_image(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("channels", ctypes.c_int),
        ("data", ctypes.POINTER(ctypes.c_uint8)),
        ("seed", ctypes.c_int64),
    ]


class sana_ctx_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("model_dir", ctypes.c_char_p),
        ("device", ctypes.c_char_p),
        ("dtype", ctypes.c_char_p),
        ("n_threads", ctypes.c_int),
        ("controlnet_dir", ctypes.c_char_p),
        ("vae_dir", ctypes.c_char_p),
        ("quantize", ctypes.c_char_p),
        ("quantize_min_weights", ctypes.c_int64),
        ("loras", ctypes.POINTER(ctypes.c_char_p)),
        ("n_loras", ctypes.c_int),
        ("tiny_vae_dir", ctypes.c_char_p),  # API version 2
    ]


PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_double, ctypes.c_void_p)


class sana_gen_params(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("prompt", ctypes.c_char_p),
        ("negative_prompt", ctypes.c_char_p),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("steps", ctypes.c_int),
        ("seed", ctypes.c_int64),
        ("guidance", ctypes.c_double),
        ("max_sequence_length", ctypes.c_int),
        ("max_timesteps", ctypes.c_double),
        ("intermediate_timesteps", ctypes.c_double),
        ("complex_human_instruction", ctypes.c_int),
        ("resolution_binning", ctypes.c_int),
        ("vae_tiling", ctypes.c_int),
        ("sampler", ctypes.c_char_p),
        ("init_image", ctypes.POINTER(sana_image)),
        ("strength", ctypes.c_double),
        ("control_image", ctypes.POINTER(sana_image)),
        ("control_preprocess", ctypes.c_char_p),
        ("control_scale", ctypes.c_double),
        ("progress", PROGRESS_FN),
        ("progress_user_data", ctypes.c_void_p),
        ("decoder", ctypes.c_char_p),  # API version 2
    ]


def _candidates():
    env = os.environ.get("SANA_SPRINT_LIBRARY")
    if env:
        return [env]  # an explicit path is the only one tried: a wrong one is an error, not a fallback
    here = os.path.dirname(os.path.abspath(__file__))
    beside = [os.path.join(here, name) for name in sorted(os.listdir(here)) if name.startswith("libsana_sprint.so")]
    system = ctypes.util.find_library("sana_sprint")
    return beside + [system or "libsana_sprint.so.0"]


def _declare(lib):
    c_ctx = ctypes.c_void_p
    signatures = {
        "sana_ctx_params_init": (None, [ctypes.POINTER(sana_ctx_params)]),
        "sana_gen_params_init": (None, [ctypes.POINTER(sana_gen_params)]),
        "sana_ctx_gen_params_init": (ctypes.c_int, [c_ctx, ctypes.POINTER(sana_gen_params)]),
        "sana_ctx_new": (c_ctx, [ctypes.POINTER(sana_ctx_params)]),
        "sana_ctx_free": (None, [c_ctx]),
        "sana_ctx_pipeline": (ctypes.c_char_p, [c_ctx]),
        "sana_generate": (ctypes.c_int, [c_ctx, ctypes.POINTER(sana_gen_params), ctypes.POINTER(sana_image)]),
        "sana_cancel": (ctypes.c_int, [c_ctx]),
        "sana_image_free": (None, [ctypes.POINTER(sana_image)]),
        "sana_last_error": (ctypes.c_char_p, []),
        "sana_version": (ctypes.c_char_p, []),
        "sana_api_version": (ctypes.c_int, []),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def _check_layout(lib):
    if lib.sana_api_version() != API_VERSION:
        raise SanaSprintError("libsana_sprint's C API is version %d, these bindings speak %d"
                              % (lib.sana_api_version(), API_VERSION), ERR_LOAD)
    cp, gp = sana_ctx_params(), sana_gen_params()
    lib.sana_ctx_params_init(ctypes.byref(cp))
    lib.sana_gen_params_init(ctypes.byref(gp))
    for struct, c_size in ((cp, cp.struct_size), (gp, gp.struct_size)):
        if c_size != ctypes.sizeof(struct):
            raise SanaSprintError("%s is %d bytes in the library and %d in these bindings"
                                  % (type(struct).__name__, c_size, ctypes.sizeof(struct)), ERR_LOAD)


_lib = None


def library():
    """The loaded libsana_sprint (found as the module's docstring says), declared and checked; loaded once."""
    global _lib
    if _lib is None:
        errors = []
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                errors.append(str(e))
                continue
            _declare(lib)
            _check_layout(lib)
            _lib = lib
            break
        else:
            raise SanaSprintError("cannot load libsana_sprint (set SANA_SPRINT_LIBRARY to the .so's path, or install "
                                  "sana-sprint): " + "; ".join(errors), ERR_LOAD)
    return _lib


def last_error():
    return library().sana_last_error().decode("utf-8", "replace")


def check(code):
    """Raises the library's last error for a non-zero return code."""
    if code == OK:
        return
    cls = SanaSprintCancelled if code == ERR_CANCELLED else SanaSprintError
    raise cls(last_error(), code)
