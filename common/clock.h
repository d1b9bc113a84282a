/* clock.h - the time seam: daemons read time only through here, so tests can set it. */
#ifndef CPN_CLOCK_H
#define CPN_CLOCK_H

#include <stdint.h>

/* Wall-clock milliseconds since the Unix epoch (or the fake time, if set). */
uint64_t cpn_now_ms(void);
/* Monotonic milliseconds, for timers and timeouts (or the fake time, if set). */
uint64_t cpn_mono_ms(void);
/* Monotonic microseconds, for latency histograms (the fake time x 1000, if set). */
uint64_t cpn_mono_us(void);
/* Tests: freeze both clocks at `ms`; 0 returns to the real clocks. */
void cpn_clock_set_fake(uint64_t ms);

#endif
