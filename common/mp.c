/* mp.c - to be written */
#include "mp.h"
