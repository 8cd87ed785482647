"""Torch tensors -> moe_tensor descriptors, contexts per device, error translation."""
import ctypes
import threading

import torch

from . import _lib as L

lib = L.lib


class MoeError(RuntimeError):
    """A libmoe call failed; .status is the moe_status, the message is libmoe's sentence."""

    def __init__(self, func, status):
        self.status = status
        name = lib.moe_status_string(status).decode()
        sentence = lib.moe_last_error().decode()
        super().__init__(f"{func}: {name}: {sentence}")


def check(func, status):
    if status != L.OK:
        raise MoeError(func, status)


_DTYPES = {
    torch.float32: L.F32,
    torch.float16: L.F16,
    torch.bfloat16: L.BF16,
    torch.float8_e4m3fn: L.E4M3,
    torch.int32: L.I32,
    torch.uint8: L.E2M1X2,  # packed fp4 pairs travel as bytes
}
if hasattr(torch, "float8_e8m0fnu"):
    _DTYPES[torch.float8_e8m0fnu] = L.E8M0
if hasattr(torch, "float4_e2m1fn_x2"):
    _DTYPES[torch.float4_e2m1fn_x2] = L.E2M1X2

E8M0 = getattr(torch, "float8_e8m0fnu", torch.uint8)


def desc(t, name="tensor", dtype=None):
    """A moe_tensor describing t (no copy). dtype overrides the mapped dtype (e.g. e8m0
    scales held in uint8 where torch lacks float8_e8m0fnu)."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
    if dtype is None:
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name} has dtype {t.dtype}, which libmoe does not take")
        dtype = _DTYPES[t.dtype]
    if t.dim() < 1 or t.dim() > L.MAX_RANK:
        raise ValueError(f"{name} has {t.dim()} dimensions; libmoe takes 1 to {L.MAX_RANK}")
    d = L.Tensor()
    d.data = t.data_ptr() or None
    d.dtype = dtype
    d.rank = t.dim()
    for i, (n, s) in enumerate(zip(t.shape, t.stride())):
        d.shape[i] = n
        d.stride[i] = s
    return d


def ref(d):
    """ctypes pointer to a descriptor, or NULL."""
    return ctypes.byref(d) if d is not None else None


_contexts = {}
_lock = threading.Lock()


def context(device):
    """The libmoe context for a torch device: CPU backend for 'cpu', CUDA for 'cuda:i'."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (device.type, device.index or 0)
    with _lock:
        if key not in _contexts:
            if device.type == "cpu":
                backend = L.BACKEND_CPU
            elif device.type == "cuda":
                backend = L.BACKEND_CUDA
            else:
                raise ValueError(f"libmoe runs on cpu and cuda tensors, not {device.type}")
            ctx = ctypes.c_void_p()
            check("moe_context_create", lib.moe_context_create(ctypes.byref(ctx), backend, key[1]))
            _contexts[key] = ctx
        return _contexts[key]


def stream(device):
    """The current torch stream of a CUDA device (as libmoe's void*), None on the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.current_stream(device).cuda_stream


def same_device(**tensors):
    """The one device all given (non-None) tensors live on."""
    dev = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, not {type(t).__name__}")
        if dev is None:
            dev, first = t.device, name
        elif t.device != dev:
            raise ValueError(f"{name} is on {t.device} but {first} is on {dev}")
    return dev


def workspace(nbytes, device):
    return torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=device)


def ptr(t):
    return t.data_ptr() if t is not None else None
