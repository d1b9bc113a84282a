/* resource.c - to be written */
#include "resource.h"
