#include "harness.h"

void suite_formats(void) {}
