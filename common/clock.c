/* clock.c - real or fake time. */
#include "clock.h"

#include <time.h>

static uint64_t s_fake_ms;

static uint64_t s_read(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t cpn_now_ms(void)
{
    return s_fake_ms ? s_fake_ms : s_read(CLOCK_REALTIME);
}

uint64_t cpn_mono_ms(void)
{
    return s_fake_ms ? s_fake_ms : s_read(CLOCK_MONOTONIC);
}

uint64_t cpn_mono_us(void)
{
    struct timespec ts;
    if (s_fake_ms)
        return s_fake_ms * 1000u;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void cpn_clock_set_fake(uint64_t ms)
{
    s_fake_ms = ms;
}
