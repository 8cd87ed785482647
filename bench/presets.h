/* Model presets from each model's published config (docs/DESIGN.md's table). */
#ifndef MOE_BENCH_PRESETS_H
#define MOE_BENCH_PRESETS_H

#include <string.h>

#include "moe.h"

typedef struct {
    const char *name;
    const char *model;
    moe_layer_config cfg; /* weights format is filled from the command line */
} bench_preset;

#define GROUPED(e, k, h, i, g, tg, r, s) \
    {e, k, h, i, MOE_ROUTING_GROUPED_SIGMOID, g, tg, 1, r, 0, s, MOE_WEIGHTS_FP8_BLOCKWISE}
#define SOFTMAX(e, k, h, i) {e, k, h, i, MOE_ROUTING_SOFTMAX, 1, 1, 1, 1.0f, 0, 0, MOE_WEIGHTS_FP8_BLOCKWISE}

static const bench_preset bench_presets[] = {
    {"deepseek-v3", "DeepSeek-V3 / R1", GROUPED(256, 8, 7168, 2048, 8, 4, 2.5f, 1)},
    {"kimi-k2", "Kimi K2", GROUPED(384, 8, 7168, 2048, 1, 1, 2.827f, 1)},
    {"kimi-vl", "Kimi-VL-A3B / Moonlight", GROUPED(64, 6, 2048, 1408, 1, 1, 2.446f, 2)},
    {"glm-4.5", "GLM-4.5", GROUPED(160, 8, 5120, 1536, 1, 1, 2.5f, 1)},
    {"qwen3-235b-a22b", "Qwen3-235B-A22B", SOFTMAX(128, 8, 4096, 1536)},
    {"qwen3-30b-a3b", "Qwen3-30B-A3B", SOFTMAX(128, 8, 2048, 768)},
    {"mixtral-8x7b", "Mixtral-8x7B", SOFTMAX(8, 2, 4096, 14336)},
    /* not a model: a few-MB layer for smoke tests */
    {"tiny", "tiny test layer", GROUPED(16, 4, 256, 128, 4, 2, 2.5f, 1)},
};

#undef GROUPED
#undef SOFTMAX

static inline const bench_preset *bench_find_preset(const char *name) {
    for (size_t i = 0; i < sizeof bench_presets / sizeof bench_presets[0]; i++)
        if (strcmp(bench_presets[i].name, name) == 0) return &bench_presets[i];
    return NULL;
}

#endif
