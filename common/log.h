/* log.h - one line per event on stderr: time, level, component, message.
 *
 * Components are short fixed names ("peer", "book", "fed"); messages name whom the event
 * concerns by short key id, never a secret.
 *
 * When stderr is the journal (JOURNAL_STREAM names it, as systemd sets for a service), each
 * line starts with its syslog priority instead of the time: <7> debug, <6> info, <4> warn,
 * <3> error; journald files the line under that priority and stamps it itself.
 */
#ifndef CPN_LOG_H
#define CPN_LOG_H

typedef enum { CPN_LOG_DEBUG = 0, CPN_LOG_INFO, CPN_LOG_WARN, CPN_LOG_ERROR } cpn_log_level_t;

/* Lowest level printed; CPN_LOG_INFO by default, or CPN_LOG_LEVEL=debug|info|warn|error. */
void cpn_log_set_level(cpn_log_level_t level);
cpn_log_level_t cpn_log_get_level(void);
/* Parse "debug".."error"; returns -1 for an unknown name. */
int cpn_log_level_parse(const char *name);
/* Name printed at the start of each line (the program), may be NULL. */
void cpn_log_set_ident(const char *ident);

void cpn_log(cpn_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(c, ...) cpn_log(CPN_LOG_DEBUG, (c), __VA_ARGS__)
#define log_info(c, ...) cpn_log(CPN_LOG_INFO, (c), __VA_ARGS__)
#define log_warn(c, ...) cpn_log(CPN_LOG_WARN, (c), __VA_ARGS__)
#define log_error(c, ...) cpn_log(CPN_LOG_ERROR, (c), __VA_ARGS__)

#endif
