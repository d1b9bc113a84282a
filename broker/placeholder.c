/* placeholder until the broker lands */
int broker_placeholder(void);
int broker_placeholder(void) { return 0; }
