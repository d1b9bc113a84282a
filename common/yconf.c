/* yconf.c - to be written */
#include "yconf.h"
