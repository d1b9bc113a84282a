/* replay.c - to be written */
#include "replay.h"
