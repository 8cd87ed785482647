"""libmoe: Mixture-of-Experts kernels (route, permute, quantise, grouped GEMM, activate,
combine, and the whole layer) on torch tensors, through libmoe's C API. CPU tensors run on
the CPU reference backend, CUDA tensors on the CUDA backend with the current stream."""
from ._core import MoeError, context
from ._lib import lib as _clib
from .layer import MoELayer, moe_forward
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all

__version__ = _clib.moe_version().decode()
__all__ = ["MoeError", "MoELayer", "moe_forward", "context", "__version__"] + list(_ops_all)
