#include "harness.h"

void suite_permute(void) {}
