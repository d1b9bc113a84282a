/* service.h - the daemon's side of the service manager's protocol (systemd's sd_notify).
 *
 * Under systemd (Type=notify) a daemon says when it is ready, what it is doing, that its event
 * loop still turns (WATCHDOG=1 at half of WatchdogSec=, so one late ping is not fatal), when it
 * reloads and when it stops. Outside systemd (no NOTIFY_SOCKET) every call is a no-op, and the
 * watchdog is off: a loop pass then pays one comparison.
 *
 * The notify socket and WATCHDOG_USEC come from the environment; WATCHDOG_PID, when set, must
 * be this process (systemd's rule), else the watchdog stays off.
 */
#ifndef CPN_SERVICE_H
#define CPN_SERVICE_H

#include <stdint.h>

/* The shortest ping interval we accept: WatchdogSec= below 2 x this is refused (logged, and
 * the watchdog stays off) rather than turning the loop into a busy wait. */
#define CPN_SERVICE_WATCHDOG_MIN_MS 100
/* Longest STATUS= line sent; longer text is cut. */
#define CPN_SERVICE_STATUS_MAX 256

/* Read NOTIFY_SOCKET / WATCHDOG_USEC once, at start (before the loop). `mono_ms` is now on
 * the monotonic clock (clock.h). */
void cpn_service_init(uint64_t mono_ms);

/* READY=1 with a STATUS= line: sockets bound, state loaded, the loop about to run. Also
 * used after a reload (RELOADING=1 ... READY=1). */
void cpn_service_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A STATUS= line alone. */
void cpn_service_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1: SIGHUP taken, the configuration is being read again; follow with _ready. */
void cpn_service_reloading(void);
/* STOPPING=1: the loop has ended, shutdown work follows. */
void cpn_service_stopping(void);

/* From each pass of the event loop: WATCHDOG=1 if the interval has passed since the last. */
void cpn_service_watchdog(uint64_t mono_ms);
/* Milliseconds until the next ping is due (0: now), or -1 when the watchdog is off; the loop
 * bounds its poll timeout with it so a quiet daemon still pings in time. */
int cpn_service_watchdog_timeout(uint64_t mono_ms);

#endif
