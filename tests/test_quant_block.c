#include "harness.h"

void suite_quant_block(void) {}
