/* envelope.c - to be written */
#include "envelope.h"
