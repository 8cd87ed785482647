/* GPU tests arrive with the CUDA kernels. */
#include "harness.h"

void suite_cuda_route(void) {}
