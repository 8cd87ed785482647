/* NVTX ranges that name the layer's steps and cases in Nsight; they compile to nothing
 * where the toolkit has no NVTX 3 headers (CMake defines MOE_HAVE_NVTX when it finds them). */
#ifndef MOE_BENCH_NVTX_RANGES_H
#define MOE_BENCH_NVTX_RANGES_H

#ifdef MOE_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
#define NVTX_PUSH(name) nvtxRangePushA(name)
#define NVTX_POP() nvtxRangePop()
#else
#define NVTX_PUSH(name) ((void)(name))
#define NVTX_POP() ((void)0)
#endif

#endif
