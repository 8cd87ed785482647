"""ctypes view of include/moe.h: the structs, enums and function signatures, and where
the shared library is found. Nothing here knows about torch."""
import ctypes
import ctypes.util
import os

MAX_RANK = 4

# moe_status
OK, ERR_INVALID_ARGUMENT, ERR_UNSUPPORTED, ERR_WORKSPACE_TOO_SMALL, ERR_OUT_OF_MEMORY, \
    ERR_NO_DEVICE, ERR_BACKEND = range(7)
# moe_dtype
F32, F16, BF16, E4M3, E8M0, E2M1X2, I32 = range(7)
# moe_backend
BACKEND_CPU, BACKEND_CUDA = 0, 1
# moe_scale_layout
SCALES_ROW_MAJOR, SCALES_COL_MAJOR = 0, 1
# moe_mx_rule
MX_RULE_CEIL, MX_RULE_OCP = 0, 1
# moe_routing, moe_weight_format
ROUTING_SOFTMAX, ROUTING_GROUPED_SIGMOID = 0, 1
WEIGHTS_BF16, WEIGHTS_FP8_BLOCKWISE = 0, 1
STEP_COUNT = 7


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int32),
                ("shape", ctypes.c_int64 * MAX_RANK), ("stride", ctypes.c_int64 * MAX_RANK)]


class GroupedTopkParams(ctypes.Structure):
    _fields_ = [("num_groups", ctypes.c_int32), ("topk_group", ctypes.c_int32),
                ("topk", ctypes.c_int32), ("renormalize", ctypes.c_int32),
                ("routed_scaling_factor", ctypes.c_float), ("scale_output", ctypes.c_int32),
                ("num_shared", ctypes.c_int32)]


class Fp8GroupParams(ctypes.Structure):
    _fields_ = [("group", ctypes.c_int32), ("eps", ctypes.c_float), ("ue8m0", ctypes.c_int32),
                ("layout", ctypes.c_int)]


class LayerConfig(ctypes.Structure):
    _fields_ = [("num_experts", ctypes.c_int32), ("topk", ctypes.c_int32),
                ("hidden", ctypes.c_int64), ("intermediate", ctypes.c_int64),
                ("routing", ctypes.c_int), ("num_groups", ctypes.c_int32),
                ("topk_group", ctypes.c_int32), ("renormalize", ctypes.c_int32),
                ("routed_scaling_factor", ctypes.c_float), ("scale_output", ctypes.c_int32),
                ("num_shared", ctypes.c_int32), ("weights", ctypes.c_int)]


class LayerWeights(ctypes.Structure):
    _fields_ = [("w1", Tensor), ("w1_scales", Tensor), ("w2", Tensor), ("w2_scales", Tensor),
                ("router_bias", Tensor)]


_P = ctypes.c_void_p
_T = ctypes.POINTER(Tensor)
_I32, _I64, _F, _SZ = ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_size_t
_SIGNATURES = {
    "moe_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "moe_last_error": (ctypes.c_char_p, []),
    "moe_version": (ctypes.c_char_p, []),
    "moe_context_create": (ctypes.c_int, [ctypes.POINTER(_P), ctypes.c_int, ctypes.c_int]),
    "moe_context_destroy": (None, [_P]),
    "moe_backend_available": (ctypes.c_int, [ctypes.c_int]),
    "moe_route_grouped_topk": (ctypes.c_int, [_P, _T, _T, ctypes.POINTER(GroupedTopkParams), _T, _T, _P]),
    "moe_route_softmax_topk": (ctypes.c_int, [_P, _T, _I32, _I32, _T, _T, _P]),
    "moe_permute_max_rows": (_I64, [_I64, _I32, _I32, _I32]),
    "moe_permute_workspace_size": (ctypes.c_int, [_P, _I64, _I32, _I32, ctypes.POINTER(_SZ)]),
    "moe_permute_plan": (ctypes.c_int, [_P, _T, _I32, _I32, _T, _T, _T, _T, _P, _SZ, _P]),
    "moe_permute_plan_masked": (ctypes.c_int, [_P, _T, _I32, _I64, _T, _T, _T, _T, _P, _SZ, _P]),
    "moe_problem_sizes": (ctypes.c_int, [_P, _T, _I64, _I64, _T, _P]),
    "moe_gather_rows": (ctypes.c_int, [_P, _T, _T, _I32, _T, _P]),
    "moe_quant_fp8_group": (ctypes.c_int, [_P, _T, _T, _I32, ctypes.POINTER(Fp8GroupParams), _T, _T, _P]),
    "moe_dequant_fp8_group": (ctypes.c_int, [_P, _T, _T, ctypes.POINTER(Fp8GroupParams), _T, _P]),
    "moe_swizzled_scale_rows": (_I64, [_I64, _I32]),
    "moe_quant_mxfp8": (ctypes.c_int, [_P, _T, _T, ctypes.c_int, _T, _T, _P]),
    "moe_dequant_mxfp8": (ctypes.c_int, [_P, _T, _T, _T, _T, _P]),
    "moe_quant_nvfp4": (ctypes.c_int, [_P, _T, _T, _T, _T, _T, _P]),
    "moe_dequant_nvfp4": (ctypes.c_int, [_P, _T, _T, _T, _T, _T, _P]),
    "moe_grouped_gemm_workspace_size": (ctypes.c_int, [_P, _I32, ctypes.POINTER(_SZ)]),
    "moe_grouped_gemm": (ctypes.c_int, [_P, _T, _T, ctypes.c_int, _T, _T, _T, _T, _P, _SZ, _P]),
    "moe_grouped_gemm_masked": (ctypes.c_int, [_P, _T, _T, ctypes.c_int, _T, _T, _T, _T, _P, _SZ, _P]),
    "moe_silu_and_mul": (ctypes.c_int, [_P, _T, _T, _P]),
    "moe_silu_and_mul_quant_fp8": (ctypes.c_int, [_P, _T, ctypes.POINTER(Fp8GroupParams), _T, _T, _P]),
    "moe_combine": (ctypes.c_int, [_P, _T, _T, _T, _F, _T, _P]),
    "moe_layer_create": (ctypes.c_int, [ctypes.POINTER(_P), _P, ctypes.POINTER(LayerConfig), ctypes.POINTER(LayerWeights)]),
    "moe_layer_destroy": (None, [_P]),
    "moe_layer_workspace_size": (ctypes.c_int, [_P, _I64, ctypes.POINTER(_SZ)]),
    "moe_layer_forward": (ctypes.c_int, [_P, _T, _T, _T, _T, _T, _P, _SZ, _P]),
}


def _candidates():
    env = os.environ.get("LIBMOE_LIBRARY")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libmoe.so")
    root = os.path.dirname(os.path.dirname(here))
    for build in ("build", "build-dev"):
        yield os.path.join(root, build, "libmoe.so")
    found = ctypes.util.find_library("moe")
    if found:
        yield found


def load():
    tried = []
    for path in _candidates():
        if path and (os.path.exists(path) or not os.path.isabs(path)):
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{path} ({e})")
                continue
            for name, (res, args) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = res, args
            lib.path = path
            return lib
        tried.append(path)
    raise ImportError("libmoe: cannot find libmoe.so; build it (cmake -S . -B build && "
                      "cmake --build build) or set LIBMOE_LIBRARY. Tried: " + ", ".join(tried))


lib = load()
