"""MoELayer (moe_layer_forward) against a plain torch MoE block written here: a loop over
experts, each taking its routed tokens through gate/up, silu * mul and down, weighted back.

The torch block follows SPEC 7's roundings: GEMM outputs rounded to bf16, silu * mul in f32
(then bf16, or straight into FP8 quantisation), and for FP8 weights the activations
quantised per 1x128 group and the weights dequantised with their 128x128 block scales
before float64 matmuls. So on the CPU backend it differs from libmoe only where libmoe's
f32 accumulation (the reference's is float64) lands a value on the other side of a bf16 or
e4m3 rounding; LAYER_TOL says what a GPU may add."""
import pytest
import torch
import torch.nn.functional as F

import libmoe

E, TOPK, HIDDEN, INTER, TOKENS = 8, 2, 256, 128, 24
# grouped routing: DeepSeek-like in miniature, one fused shared expert
G_E, G_GROUPS, G_TOPK_GROUP, G_TOPK, G_SHARED, G_SCALE = 16, 4, 2, 4, 1, 2.5


def rel_fro(actual, expected):
    a, b = actual.double(), expected.double()
    return ((a - b).norm() / b.norm()).item()


# How close the layer must come to the torch block, by ||out - ref|| / ||ref||.
# CPU backend: the reference repeats every rounding libmoe makes; only the accumulation
# differs (f32 there, float64 here), and an f32 sum of K <= 256 terms, off by ~16 * 2^-24,
# lands on the other side of a bf16 half-ulp (2^-9) for about one element in 10^4, moving
# it one ulp (measured: <= 2e-4 overall). 1e-3 is a quarter of a bf16 ulp on every element.
# CUDA backend: tensor-core GEMMs may each be off by SPEC 4's 2e-3; two of them, with the
# activations re-rounded between, allow ~5e-3 for bf16. FP8 re-quantises the activations to
# e4m3 between the GEMMs: a GEMM-1 difference d flips a code with probability ~d / 2^-4,
# and a flip moves the value a whole step (~2^-4), an RMS of 2^-4 * sqrt(16 d) ~ 1.1e-2
# at d = 2e-3, hence 2e-2.
# Real faults (a wrong expert, slot, weight, scale or layout) move whole rows by O(1).
LAYER_TOL = {("cpu", False): 1e-3, ("cpu", True): 1e-3,
             ("cuda", False): 5e-3, ("cuda", True): 2e-2}


def torch_moe_block(x, ids, weights, w1, w2, scale=1.0, w1_scales=None, w2_scales=None,
                    ref=None):
    """out[t] = scale * sum_j weights[t, j] * expert_{ids[t, j]}(x[t]); ids outside
    [0, E') (-1 marks a non-local expert) contribute nothing."""
    fp8 = w1_scales is not None
    if fp8:
        w1 = ref.block_dequant_weights(w1, w1_scales)
        w2 = ref.block_dequant_weights(w2, w2_scales)
    inter = w2.shape[2]
    out = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    for e in range(w1.shape[0]):
        tok, slot = (ids == e).nonzero(as_tuple=True)
        if tok.numel() == 0:
            continue
        xe = x[tok]
        if fp8:
            xe = ref.fp8_group_dequant(*ref.fp8_group_quant(xe))
        h = (xe.double() @ w1[e].double().t()).bfloat16()
        act = F.silu(h[:, :inter].float()) * h[:, inter:].float()
        act = ref.fp8_group_dequant(*ref.fp8_group_quant(act)) if fp8 else act.bfloat16()
        y = (act.double() @ w2[e].double().t()).bfloat16()
        out.index_add_(0, tok, y.double() * weights[tok, slot, None].double())
    return (out * scale).bfloat16()


def make_weights(rand, ref, experts, fp8):
    """Random expert weights (std 0.05 keeps the activations O(1)); FP8 as DeepSeek-V3
    ships them: e4m3 with 128x128 block scales."""
    w1 = rand(experts, 2 * INTER, HIDDEN, dtype=torch.bfloat16, scale=0.05)
    w2 = rand(experts, HIDDEN, INTER, dtype=torch.bfloat16, scale=0.05)
    if not fp8:
        return dict(w1=w1, w2=w2)
    w1_q, w1_s = ref.block_quant_weights(w1)
    w2_q, w2_s = ref.block_quant_weights(w2)
    return dict(w1=w1_q, w2=w2_q, w1_scales=w1_s, w2_scales=w2_s)


def make_layer(rand, ref, routing, fp8, scale_output=False):
    """(layer, weights, torch routing function, the scale the output carries)."""
    if routing == "softmax":
        wts = make_weights(rand, ref, E, fp8)
        layer = libmoe.MoELayer(wts["w1"], wts["w2"], TOPK, w1_scales=wts.get("w1_scales"),
                                w2_scales=wts.get("w2_scales"), routing="softmax")
        route = lambda logits: ref.softmax_topk(logits, TOPK, True)[:2]
        return layer, wts, route, 1.0, E
    wts = make_weights(rand, ref, G_E + G_SHARED, fp8)
    bias = rand(G_E, scale=0.1)
    layer = libmoe.MoELayer(wts["w1"], wts["w2"], G_TOPK, w1_scales=wts.get("w1_scales"),
                            w2_scales=wts.get("w2_scales"), routing="grouped",
                            num_groups=G_GROUPS, topk_group=G_TOPK_GROUP,
                            routed_scaling_factor=G_SCALE, scale_output=scale_output,
                            num_shared=G_SHARED, router_bias=bias)
    route = lambda logits: ref.grouped_topk(logits, bias, G_GROUPS, G_TOPK_GROUP, G_TOPK, True,
                                            G_SCALE, scale_output, G_SHARED)[:2]
    # routing applies r to the weights, or the layer applies it to the output
    return layer, wts, route, (1.0 if scale_output else G_SCALE), G_E


ROUTINGS = {
    "softmax": ("softmax", False),
    "grouped-shared": ("grouped", False),
    "grouped-shared-scaled": ("grouped", True),
}


@pytest.mark.parametrize("fp8", [False, True], ids=["bf16", "fp8"])
@pytest.mark.parametrize("routing", list(ROUTINGS))
def test_layer_router_logits(device, rand, ref, routing, fp8):
    kind, scale_output = ROUTINGS[routing]
    layer, wts, route, out_scale, experts = make_layer(rand, ref, kind, fp8, scale_output)
    x = rand(TOKENS, HIDDEN, dtype=torch.bfloat16)
    logits = rand(TOKENS, experts, scale=2.0)
    out = layer(x, logits)
    assert out.shape == x.shape and out.dtype == torch.bfloat16

    ids, w = route(logits)
    expected = torch_moe_block(x, ids, w, wts["w1"], wts["w2"], out_scale,
                               wts.get("w1_scales"), wts.get("w2_scales"), ref)
    assert rel_fro(out, expected) <= LAYER_TOL[device.type, fp8]


@pytest.mark.parametrize("fp8", [False, True], ids=["bf16", "fp8"])
def test_layer_precomputed_topk(device, gen, rand, ref, fp8):
    layer, wts, _, _, _ = make_layer(rand, ref, "softmax", fp8)
    x = rand(TOKENS, HIDDEN, dtype=torch.bfloat16)
    ids = torch.rand(TOKENS, E, generator=gen).topk(TOPK, dim=-1).indices.int()
    # expert parallelism: experts living on another rank come as -1 and are skipped
    ids[torch.rand(TOKENS, TOPK, generator=gen) < 0.2] = -1
    ids = ids.to(device)
    w = torch.rand(TOKENS, TOPK, generator=gen).to(device)
    out = layer(x, topk_ids=ids, topk_weights=w)
    expected = torch_moe_block(x, ids, w, wts["w1"], wts["w2"], 1.0, wts.get("w1_scales"),
                               wts.get("w2_scales"), ref)
    assert rel_fro(out, expected) <= LAYER_TOL[device.type, fp8]


@pytest.mark.parametrize("routing", ["softmax", "grouped-shared"])
def test_layer_logits_equal_libmoe_routing(device, rand, ref, routing):
    """Routing inside the layer is the routing op: the same ids and weights passed in
    give the same bytes out."""
    kind, scale_output = ROUTINGS[routing]
    layer, _, _, _, experts = make_layer(rand, ref, kind, False, scale_output)
    x = rand(TOKENS, HIDDEN, dtype=torch.bfloat16)
    logits = rand(TOKENS, experts, scale=2.0)
    if kind == "softmax":
        ids, w = libmoe.route_softmax_topk(logits, TOPK, True)
    else:
        ids, w = libmoe.route_grouped_topk(logits, layer.router_bias, G_GROUPS, G_TOPK_GROUP,
                                           G_TOPK, True, G_SCALE, scale_output, G_SHARED)
    assert torch.equal(layer(x, logits), layer(x, topk_ids=ids, topk_weights=w))


BAD_CONFIGS = {
    "topk-above-experts": (dict(topk=E + 1), r"topk \(9\)"),
    "groups-not-dividing": (dict(topk=2, routing="grouped", num_groups=3, topk_group=1),
                            r"num_groups \(3\) must divide"),
    "topk-group-above-groups": (dict(topk=2, routing="grouped", num_groups=2, topk_group=3),
                                r"topk_group \(3\)"),
    "shared-with-softmax": (dict(topk=2, num_shared=1), r"num_shared \(1\)"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_fails_at_construction(device, rand, ref, case):
    kwargs, message = BAD_CONFIGS[case]
    wts = make_weights(rand, ref, E, False)
    with pytest.raises(libmoe.MoeError, match=message):
        libmoe.MoELayer(wts["w1"], wts["w2"], **kwargs)


def test_bad_weights_fail_at_construction(device, rand, ref):
    wts = make_weights(rand, ref, E, False)
    with pytest.raises(libmoe.MoeError, match=r"w2.shape\[2\] \(64\)"):
        libmoe.MoELayer(wts["w1"], wts["w2"][:, :, :64], TOPK)
    fp8 = make_weights(rand, ref, E, True)
    with pytest.raises(libmoe.MoeError, match=r"w1_scales"):   # e4m3 weights need scales
        libmoe.MoELayer(fp8["w1"], fp8["w2"], TOPK)
    with pytest.raises(ValueError, match="routing"):
        libmoe.MoELayer(wts["w1"], wts["w2"], TOPK, routing="sigmoid")
    # every weight must live where w1 does (a meta tensor stands in for another device)
    with pytest.raises(ValueError, match="w1_scales is on meta"):
        libmoe.MoELayer(fp8["w1"], fp8["w2"], TOPK, w1_scales=fp8["w1_scales"].to("meta"),
                        w2_scales=fp8["w2_scales"])


def test_layer_opcheck_and_compile(device, rand, ref):
    layer, _, _, _, _ = make_layer(rand, ref, "softmax", False)
    x = rand(TOKENS, HIDDEN, dtype=torch.bfloat16)
    logits = rand(TOKENS, E)
    args = (x, logits, None, None, layer.w1, None, layer.w2, None, None, layer.config,
            layer.routed_scaling_factor)
    torch.library.opcheck(torch.ops.libmoe.moe_forward.default, args)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x, logits), layer(x, logits))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fp8", [False, True], ids=["bf16", "fp8"])
def test_layer_cuda_graph(gen, ref, fp8):
    """Ops never allocate, synchronise or copy to the host, so the whole layer captures;
    replays with new inputs must match eager calls on them."""
    def rand(*shape, dtype=torch.float32, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype).cuda()

    layer, _, _, _, experts = make_layer(rand, ref, "grouped", fp8)
    x = rand(TOKENS, HIDDEN, dtype=torch.bfloat16)
    logits = rand(TOKENS, experts)

    side = torch.cuda.Stream()   # warm up off the capture stream, as torch advises
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        layer(x, logits)
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = layer(x, logits)
    for _ in range(2):
        x.copy_(rand(TOKENS, HIDDEN, dtype=torch.bfloat16))
        logits.copy_(rand(TOKENS, experts))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, layer(x, logits))
