"""MoELayer: a whole MoE layer (route -> permute -> quantise -> GEMM -> silu*mul -> GEMM ->
combine) through libmoe's moe_layer_forward, registered as torch.ops.libmoe.moe_forward."""
import ctypes
import threading
from typing import List, Optional

import torch
from torch import Tensor

from . import _lib as L
from ._core import check, context, desc, lib, ref, same_device, stream, workspace

_handles = {}
_lock = threading.Lock()
_EMPTY = L.Tensor()  # data NULL: an absent weight


def _layer_handle(cfg_ints, r, w1, w1_scales, w2, w2_scales, bias):
    """A moe_layer for this config and these weights (cached: creation only checks and
    copies descriptors, but forward should not pay for it every call)."""
    key = (tuple(cfg_ints), r, w1.device,) + tuple(
        (t.data_ptr(), tuple(t.shape), tuple(t.stride())) if t is not None else None
        for t in (w1, w1_scales, w2, w2_scales, bias))
    with _lock:
        h = _handles.get(key)
        if h is not None:
            return h
        # libmoe reads every weight where the context works: a scale or bias left on
        # another device would be dereferenced there (an illegal address on a GPU)
        same_device(w1=w1, w1_scales=w1_scales, w2=w2, w2_scales=w2_scales, router_bias=bias)
        e, k, hid, inter, routing, g, tg, renorm, scale_out, shared, fmt = cfg_ints
        cfg = L.LayerConfig(e, k, hid, inter, routing, g, tg, renorm, r, scale_out, shared, fmt)
        wts = L.LayerWeights()
        wts.w1, wts.w2 = desc(w1, "w1"), desc(w2, "w2")
        wts.w1_scales = desc(w1_scales, "w1_scales") if w1_scales is not None else _EMPTY
        wts.w2_scales = desc(w2_scales, "w2_scales") if w2_scales is not None else _EMPTY
        wts.router_bias = desc(bias, "router_bias") if bias is not None else _EMPTY
        h = ctypes.c_void_p()
        check("moe_layer_create", lib.moe_layer_create(
            ctypes.byref(h), context(w1.device), ctypes.byref(cfg), ctypes.byref(wts)))
        _handles[key] = h
        return h


@torch.library.custom_op("libmoe::moe_forward", mutates_args=())
def moe_forward(x: Tensor, router_logits: Optional[Tensor], topk_ids: Optional[Tensor],
                topk_weights: Optional[Tensor], w1: Tensor, w1_scales: Optional[Tensor],
                w2: Tensor, w2_scales: Optional[Tensor], router_bias: Optional[Tensor],
                config: List[int], routed_scaling_factor: float) -> Tensor:
    """The layer's forward on x [T, H] bf16; config = (E, k, H, I, routing, G, TG,
    renormalize, scale_output, S, weight format)."""
    dev = same_device(x=x, router_logits=router_logits, topk_ids=topk_ids,
                      topk_weights=topk_weights, w1=w1, w2=w2)
    h = _layer_handle(config, routed_scaling_factor, w1, w1_scales, w2, w2_scales, router_bias)
    nbytes = ctypes.c_size_t()
    check("moe_layer_workspace_size", lib.moe_layer_workspace_size(h, x.shape[0], ctypes.byref(nbytes)))
    ws = workspace(nbytes.value, dev)
    out = torch.empty_like(x)
    check("moe_layer_forward", lib.moe_layer_forward(
        h, ref(desc(x, "x")), ref(desc(router_logits, "router_logits")),
        ref(desc(topk_ids, "topk_ids")), ref(desc(topk_weights, "topk_weights")), ref(desc(out)),
        ws.data_ptr(), nbytes.value, stream(dev)))
    return out


@moe_forward.register_fake
def _(x, router_logits, topk_ids, topk_weights, w1, w1_scales, w2, w2_scales, router_bias,
      config, routed_scaling_factor):
    return torch.empty_like(x)


class MoELayer(torch.nn.Module):
    """One MoE layer over borrowed weight tensors (kept referenced by the module).

    w1 [E+S, 2I, H] (gate rows then up rows) and w2 [E+S, H, I]: bf16, or float8_e4m3fn with
    w1_scales [E+S, 2I/128, H/128] and w2_scales [E+S, H/128, I/128] f32. Routing "softmax"
    or "grouped" (sigmoid + router_bias, num_groups / topk_group, routed_scaling_factor,
    num_shared fused shared experts)."""

    def __init__(self, w1, w2, topk, *, w1_scales=None, w2_scales=None, routing="softmax",
                 num_groups=1, topk_group=1, renormalize=True, routed_scaling_factor=1.0,
                 scale_output=False, num_shared=0, router_bias=None):
        super().__init__()
        if routing not in ("softmax", "grouped"):
            raise ValueError(f"routing must be 'softmax' or 'grouped', not {routing!r}")
        fp8 = w1.dtype == torch.float8_e4m3fn
        e_all, two_i, hid = w1.shape
        self.w1, self.w2, self.w1_scales, self.w2_scales = w1, w2, w1_scales, w2_scales
        self.router_bias = router_bias
        self.num_experts = e_all - num_shared
        self.config = [self.num_experts, topk, hid, two_i // 2,
                       L.ROUTING_SOFTMAX if routing == "softmax" else L.ROUTING_GROUPED_SIGMOID,
                       num_groups, topk_group, int(renormalize), int(scale_output), num_shared,
                       L.WEIGHTS_FP8_BLOCKWISE if fp8 else L.WEIGHTS_BF16]
        self.routed_scaling_factor = float(routed_scaling_factor)
        # create once now so a bad config fails here, with libmoe's sentence
        _layer_handle(self.config, self.routed_scaling_factor, w1, w1_scales, w2, w2_scales,
                      router_bias)

    def forward(self, x, router_logits=None, topk_ids=None, topk_weights=None):
        return torch.ops.libmoe.moe_forward(
            x, router_logits, topk_ids, topk_weights, self.w1, self.w1_scales, self.w2,
            self.w2_scales, self.router_bias, self.config, self.routed_scaling_factor)
