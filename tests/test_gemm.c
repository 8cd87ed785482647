#include "harness.h"

void suite_gemm(void) {}
