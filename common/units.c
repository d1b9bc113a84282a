/* units.c - to be written */
#include "units.h"
