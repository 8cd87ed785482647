#include "harness.h"

void suite_layer(void) {}
