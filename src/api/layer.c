/* STUB */
#include "internal.h"
moe_status moe_layer_create(moe_layer **layer, moe_context *ctx, const moe_layer_config *config, const moe_layer_weights *weights) { (void)layer; (void)config; (void)weights; moe_clear_error(); MOE_TRY(moe_check_ctx(ctx)); return moe_unsupported(ctx, "moe_layer_create"); }
void moe_layer_destroy(moe_layer *layer) { (void)layer; }
moe_status moe_layer_workspace_size(const moe_layer *layer, int64_t max_tokens, size_t *bytes) { (void)layer; (void)max_tokens; (void)bytes; return MOE_ERR_UNSUPPORTED; }
moe_status moe_layer_forward(moe_layer *layer, const moe_tensor *x, const moe_tensor *router_logits, const moe_tensor *topk_ids, const moe_tensor *topk_weights, moe_tensor *out, void *workspace, size_t workspace_bytes, void *stream) { (void)layer; (void)x; (void)router_logits; (void)topk_ids; (void)topk_weights; (void)out; (void)workspace; (void)workspace_bytes; (void)stream; return MOE_ERR_UNSUPPORTED; }
