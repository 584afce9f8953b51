/* An embedding program in C99 over the installed C API: one image from a prompt, written as a binary PPM.
 *
 *   cc -std=c99 generate.c $(pkg-config --cflags --libs sana-sprint) -o generate
 *   ./generate MODEL_DIR "two red circles above a blue square" out.ppm [SEED]
 *
 * Sizes, steps and the other settings are the model folder's defaults (what `sana-sprint generate` uses). */
#include <sana_sprint.h>
#include <stdio.h>
#include <stdlib.h>

static int print_progress(const char* stage, double seconds, void* user_data) {
  (void)user_data;
  fprintf(stderr, "%s: %.2f s\n", stage, seconds);
  return 0; /* non-zero would cancel the call */
}

static int write_ppm(const char* path, const sana_image* img) {
  FILE* f = fopen(path, "wb");
  if (!f) return 0;
  fprintf(f, "P6\n%d %d\n255\n", img->width, img->height);
  const size_t bytes = (size_t)img->width * (size_t)img->height * 3;
  const int ok = fwrite(img->data, 1, bytes, f) == bytes;
  return fclose(f) == 0 && ok;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODEL_DIR PROMPT OUT.ppm [SEED]\n", argv[0]);
    return 2;
  }
  fprintf(stderr, "sana-sprint %s (C API %d)\n", sana_version(), sana_api_version());

  sana_ctx_params cp;
  sana_ctx_params_init(&cp);
  cp.model_dir = argv[1];
  sana_ctx* ctx = sana_ctx_new(&cp);
  if (!ctx) {
    fprintf(stderr, "error: %s\n", sana_last_error());
    return 1;
  }

  sana_gen_params gp;
  if (sana_ctx_gen_params_init(ctx, &gp) != SANA_OK) {
    fprintf(stderr, "error: %s\n", sana_last_error());
    sana_ctx_free(ctx);
    return 1;
  }
  gp.prompt = argv[2];
  if (argc > 4) gp.seed = strtoll(argv[4], NULL, 10);
  gp.progress = print_progress;

  sana_image img;
  int rc = sana_generate(ctx, &gp, &img);
  if (rc != SANA_OK) {
    fprintf(stderr, "error %d: %s\n", rc, sana_last_error());
  } else if (!write_ppm(argv[3], &img)) {
    fprintf(stderr, "error: cannot write %s\n", argv[3]);
    rc = 1;
  } else {
    fprintf(stderr, "%s: %dx%d, seed %lld (%s)\n", argv[3], img.width, img.height, (long long)img.seed,
            sana_ctx_pipeline(ctx));
  }
  sana_image_free(&img);
  sana_ctx_free(ctx);
  return rc == SANA_OK ? 0 : 1;
}
