/* log.c - levelled, component-tagged log lines on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static cpn_log_level_t s_level = CPN_LOG_INFO;
static int s_level_from_env_done;
static const char *s_ident = "cpn";
static const char *const s_names[] = {"debug", "info", "warn", "error"};
/* syslog priorities (sd-daemon.h's SD_DEBUG ... SD_ERR) of the levels above */
static const char *const s_prio[] = {"<7>", "<6>", "<4>", "<3>"};
static int s_journal = -1; /* stderr is the journal: -1 not checked yet, 0 no, 1 yes */

/* systemd sets JOURNAL_STREAM=DEV:INODE of the stream it connected to stderr; a stderr
 * redirected elsewhere since (a pipe, a file) does not match and gets plain lines. */
static int s_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev = 0, ino = 0;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int cpn_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, s_names[i]) == 0)
            return i;
    return -1;
}

void cpn_log_set_level(cpn_log_level_t level)
{
    s_level = level;
    s_level_from_env_done = 1;
}

cpn_log_level_t cpn_log_get_level(void)
{
    if (!s_level_from_env_done) {
        int l = cpn_log_level_parse(getenv("CPN_LOG_LEVEL"));
        if (l >= 0)
            s_level = (cpn_log_level_t)l;
        s_level_from_env_done = 1;
    }
    return s_level;
}

void cpn_log_set_ident(const char *ident)
{
    s_ident = ident ? ident : "cpn";
}

void cpn_log(cpn_log_level_t level, const char *component, const char *fmt, ...)
{
    if (level < cpn_log_get_level())
        return;
    char line[1024];
    int n;
    if (s_journal < 0)
        s_journal = s_stderr_is_journal();
    if (s_journal) {
        /* journald reads the priority from the prefix and stamps the time and the unit */
        n = snprintf(line, sizeof line, "%s%-5s %-6s ", s_prio[level], s_names[level],
                     component);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %-5s %-6s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, s_ident, s_names[level], component);
    }
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len >= sizeof line - 1)
        len = sizeof line - 2; /* truncated: still one line */
    /* Network input may reach a log line: keep it on one line. */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len] = '\n';
    fwrite(line, 1, len + 1, stderr);
}
