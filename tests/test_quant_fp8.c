#include "harness.h"

void suite_quant_fp8(void) {}
