/* service.c - sd_notify for READY, STATUS, WATCHDOG, RELOADING, STOPPING (service.h). */
#include "service.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

static struct {
    int notify;            /* NOTIFY_SOCKET is set: a service manager listens */
    uint64_t interval_ms;  /* 0: watchdog off */
    uint64_t next_ms;      /* monotonic time of the next WATCHDOG=1 */
} s_svc;

void cpn_service_init(uint64_t mono_ms)
{
    uint64_t usec = 0;
    memset(&s_svc, 0, sizeof s_svc);
    s_svc.notify = getenv("NOTIFY_SOCKET") != NULL;
    /* > 0: enabled for this pid (WATCHDOG_PID unset or ours); 0 off; < 0 malformed. */
    int r = sd_watchdog_enabled(0, &usec);
    if (r < 0)
        log_error("service", "WATCHDOG_USEC malformed (%s): watchdog off", strerror(-r));
    if (r <= 0 || !s_svc.notify)
        return;
    /* Half the deadline: one pass that runs late still pings before systemd gives up. */
    uint64_t half = usec / 2000;
    if (half < CPN_SERVICE_WATCHDOG_MIN_MS) {
        log_error("service", "WatchdogSec of %llu us is below %d ms: watchdog off",
                  (unsigned long long)usec, 2 * CPN_SERVICE_WATCHDOG_MIN_MS);
        return;
    }
    s_svc.interval_ms = half;
    s_svc.next_ms = mono_ms; /* the first ping goes out with the first pass */
    log_info("service", "watchdog: WATCHDOG=1 every %llu ms", (unsigned long long)half);
}

/* "PREFIX" followed by the formatted STATUS= text, sent as one datagram. */
static void s_notify_status(const char *prefix, const char *fmt, va_list ap)
{
    char status[CPN_SERVICE_STATUS_MAX], msg[CPN_SERVICE_STATUS_MAX + 32];
    if (!s_svc.notify)
        return;
    int n = vsnprintf(status, sizeof status, fmt, ap);
    if (n < 0)
        status[0] = '\0'; /* n >= size: cut, which is what we want */
    for (char *p = status; *p; p++)
        if (*p == '\n')
            *p = ' '; /* a newline would start another assignment */
    snprintf(msg, sizeof msg, "%sSTATUS=%s", prefix, status);
    (void)sd_notify(0, msg);
}

void cpn_service_ready(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_notify_status("READY=1\n", fmt, ap);
    va_end(ap);
}

void cpn_service_status(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_notify_status("", fmt, ap);
    va_end(ap);
}

void cpn_service_reloading(void)
{
    if (s_svc.notify)
        (void)sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
}

void cpn_service_stopping(void)
{
    if (s_svc.notify)
        (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void cpn_service_watchdog(uint64_t mono_ms)
{
    if (!s_svc.interval_ms || mono_ms < s_svc.next_ms)
        return;
    s_svc.next_ms = mono_ms + s_svc.interval_ms;
    (void)sd_notify(0, "WATCHDOG=1");
}

int cpn_service_watchdog_timeout(uint64_t mono_ms)
{
    if (!s_svc.interval_ms)
        return -1;
    return mono_ms >= s_svc.next_ms ? 0 : (int)(s_svc.next_ms - mono_ms);
}
