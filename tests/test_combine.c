#include "harness.h"

void suite_combine(void) {}
