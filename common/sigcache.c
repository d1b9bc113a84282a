/* sigcache.c - to be written */
#include "sigcache.h"
