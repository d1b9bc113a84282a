/* msg.c - to be written */
#include "msg.h"
