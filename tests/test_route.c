#include "harness.h"

void suite_route(void) {}
