/*
 * sana_sprint.h: the C API of sana-sprint (libsana_sprint.so), for programs that embed it as their image engine.
 * Plain C99; every C++ error is caught inside the library and returned as a code plus a message.
 *
 *   sana_ctx_params cp;  sana_ctx_params_init(&cp);  cp.model_dir = "models/sana-sprint-shapes";
 *   sana_ctx* ctx = sana_ctx_new(&cp);                        (NULL on error: sana_last_error() says why)
 *   sana_gen_params gp;  sana_ctx_gen_params_init(ctx, &gp);  gp.prompt = "a red circle";
 *   sana_image img;  if (sana_generate(ctx, &gp, &img) == SANA_OK) { ... img.data ... }  sana_image_free(&img);
 *   sana_ctx_free(ctx);
 *
 * Versioning: every params struct starts with `struct_size`, which its *_init function sets to the size this header
 * declares. A struct from an older header (smaller) is read up to its size, the rest taken as defaults; one from a
 * newer header (larger) or one never initialised is refused with SANA_ERR_INVALID_ARGUMENT. Fields marked "API version
 * 2" were appended in version 2.
 *
 * Threads (docs/EMBEDDING.md): calls on one context run one at a time (a second thread's call waits for the first);
 * different contexts may run at once. sana_cancel may be called from any thread. sana_last_error is per thread.
 * Misuse that is detected and reported (never a crash): NULL pointers, a context already freed (handles are never
 * reused), a struct of the wrong size. Freeing a context while another thread is inside a call on it is allowed: the
 * call finishes, then the weights are freed.
 */
#ifndef SANA_SPRINT_H
#define SANA_SPRINT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SANA_API __attribute__((visibility("default")))
#else
#define SANA_API
#endif

/* The version of this header's API; sana_api_version() gives the library's. */
#define SANA_API_VERSION 2

/* Return codes. */
#define SANA_OK 0
#define SANA_ERR_INVALID_ARGUMENT 1 /* a NULL pointer, a bad field, an unknown context, a struct of the wrong size */
#define SANA_ERR_LOAD 2             /* the model folder (or ControlNet / VAE folder) could not be loaded */
#define SANA_ERR_GENERATE 3         /* the call failed while running (out of memory, a NaN, ...) */
#define SANA_ERR_CANCELLED 4        /* sana_cancel, or the progress callback returned non-zero */

typedef struct sana_ctx sana_ctx; /* a loaded pipeline; opaque */

/* An 8-bit image, rows top to bottom, pixels interleaved (RGB for channels = 3). Images the library returns hold
 * 3 channels and are freed with sana_image_free; input images may have 1 (grey), 3 (RGB) or 4 (RGBA, alpha ignored). */
typedef struct sana_image {
  int width, height, channels;
  uint8_t* data;
  int64_t seed; /* on return: the seed that drew the image (the one given, or the random one for -1) */
} sana_image;

typedef struct sana_ctx_params {
  size_t struct_size;        /* set by sana_ctx_params_init */
  const char* model_dir;     /* a diffusers pipeline folder (SanaSprintPipeline or SanaPipeline); required */
  const char* device;        /* "cpu" | "cuda" | "cuda:N" */
  const char* dtype;         /* "fp32" | "bf16" | "fp16" (CUDA only) | "auto" (per stage the faster) */
  int n_threads;             /* CPU threads of each call (LibTorch's intra-op pool); 0: all cores */
  const char* controlnet_dir;  /* a SanaControlNetModel folder to attach; NULL or "": the model's own, if any */
  const char* vae_dir;       /* an AutoencoderDC folder used instead of the model's vae/ (e.g. DC-AE-Lite) */
  const char* quantize;      /* NULL or "" | "int8" (weight-only) | "w8a8" (int8 products on the CPU) | "q4" (4-bit) */
  int64_t quantize_min_weights; /* layers with fewer weights are not quantized */
  const char* const* loras;  /* n_loras LoRA files fused into the weights, each "FILE" or "FILE:SCALE" (docs/LORA.md) */
  int n_loras;
  /* API version 2: */
  const char* tiny_vae_dir;  /* an AutoencoderTiny folder used as the tiny decoder instead of the model's vae_tiny/ */
} sana_ctx_params;

/* Called at each stage of a call ("text encoder", "step 1/2", "vae decode") with the seconds since the call began.
 * Return non-zero to cancel the call (it then returns SANA_ERR_CANCELLED). */
typedef int (*sana_progress_fn)(const char* stage, double seconds, void* user_data);

typedef struct sana_gen_params {
  size_t struct_size;          /* set by the *_init functions */
  const char* prompt;          /* required, UTF-8 */
  const char* negative_prompt; /* flow teachers' classifier-free guidance */
  int width, height;           /* multiples of the VAE factor (32 for the real DC-AE) */
  int steps;                   /* Sprint: 1-4; teachers: flow-ODE steps */
  int64_t seed;                /* -1: a random seed (reported in sana_image.seed) */
  double guidance;             /* Sprint: embedded guidance; teachers: real CFG */
  int max_sequence_length;     /* text tokens kept after the encoder */
  double max_timesteps;        /* Sprint schedule: the first TrigFlow time */
  double intermediate_timesteps; /* Sprint schedule: the middle time of 2 steps */
  int complex_human_instruction; /* non-zero: prepend SANA's instruction to the prompt */
  int resolution_binning;      /* non-zero: 1024-px models generate at the nearest trained aspect ratio */
  int vae_tiling;              /* non-zero: decode in overlapping tiles (less memory for large images) */
  const char* sampler;         /* flow teachers: NULL or "" (the folder's scheduler) | "euler" | "dpm++2m" */
  const sana_image* init_image; /* img2img (Sprint models); NULL: text to image */
  double strength;             /* img2img: the share of the schedule that runs, in whole steps */
  const sana_image* control_image; /* ControlNet (a context with one); NULL: none */
  const char* control_preprocess;  /* "none" | "invert" (black strokes on white) | "canny" (edges of a photo) */
  double control_scale;        /* factor on the ControlNet's residuals */
  sana_progress_fn progress;   /* optional */
  void* progress_user_data;
  /* API version 2: */
  const char* decoder;         /* "full" (the VAE) | "tiny" (the tiny preview decoder, docs/DECODERS.md); NULL: full */
} sana_gen_params;

/* The library's defaults (the same as `sana-sprint generate`'s). */
SANA_API void sana_ctx_params_init(sana_ctx_params* params);
SANA_API void sana_gen_params_init(sana_gen_params* params);
/* The library's defaults with the context's model folder's generation_defaults.json applied: what
 * `sana-sprint generate -m DIR -p PROMPT` uses. Returns SANA_OK or an error code. Strings it sets stay valid until the
 * context is freed. */
SANA_API int sana_ctx_gen_params_init(sana_ctx* ctx, sana_gen_params* params);

/* Loads the pipeline; NULL on error (sana_last_error). */
SANA_API sana_ctx* sana_ctx_new(const sana_ctx_params* params);
/* Frees the context and its weights (after a call still running on it ends). NULL is ignored; a context not live is
 * reported in sana_last_error. */
SANA_API void sana_ctx_free(sana_ctx* ctx);
/* The pipeline's diffusers class name ("SanaSprintPipeline", "SanaPipeline", "SanaControlNetPipeline", ...), valid
 * until the context is freed; NULL for a context not live. */
SANA_API const char* sana_ctx_pipeline(sana_ctx* ctx);

/* Draws one image into *out (whose previous contents are not freed). SANA_OK, or an error code with *out zeroed. */
SANA_API int sana_generate(sana_ctx* ctx, const sana_gen_params* params, sana_image* out);
/* Asks the call running on `ctx` (from another thread) to stop at its next stage. Returns 1 if a call was running,
 * 0 if none was (nothing is remembered for later calls), -1 for a context not live. */
SANA_API int sana_cancel(sana_ctx* ctx);
/* Frees an image the library returned and zeroes it; NULL and empty images are ignored. */
SANA_API void sana_image_free(sana_image* image);

/* The message of this thread's last failed call ("" if none), valid until its next call into the library. */
SANA_API const char* sana_last_error(void);
/* "MAJOR.MINOR.PATCH" of the library. */
SANA_API const char* sana_version(void);
/* SANA_API_VERSION of the library. */
SANA_API int sana_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SANA_SPRINT_H */
