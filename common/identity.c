/* identity.c - to be written */
#include "identity.h"
