/* moe-bench --layer: the GPU sweep over presets x token counts (CUDA builds only). */
#ifndef MOE_BENCH_LAYER_SWEEP_H
#define MOE_BENCH_LAYER_SWEEP_H

typedef struct {
    const char *preset;  /* NULL: every preset but tiny */
    const char *weights; /* "fp8", "bf16" or "both" */
    const char *json;    /* file to keep every case in, or NULL */
    const long *tokens;  /* the token counts T, one case each */
    int num_tokens;
    int max_iters;       /* timed iterations per mode, fewer for slow cases; 0: 20 */
    unsigned long long seed;
} layer_sweep_options;

/* Prints the table (and writes the JSON) for every case; the caller has checked that the
 * CUDA backend sees a GPU. Returns the exit status: 0, 1 when a case broke the CUDA
 * context (or setup failed), 2 for an unknown preset. */
int run_layer_sweep(const layer_sweep_options *o);

#endif
