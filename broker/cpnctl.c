#include <stdio.h>
int main(void) { puts("cpnctl: not yet"); return 1; }
