#include "harness.h"

void suite_api(void) {}
