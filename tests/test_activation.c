#include "harness.h"

void suite_activation(void) {}
