/* httpd.c - libmicrohttpd with its internal polling thread, one handler per daemon. */
#include "httpd.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "log.h"

struct cpn_http {
    struct MHD_Daemon *d;
    cpn_http_fn fn;
    void *arg;
    uint16_t port;
    cpn_http_counts_t counts; /* written and read in the server's thread only */
};

void cpn_http_text(cpn_http_reply_t *out, unsigned status, const char *type, const char *text)
{
    out->len = strlen(text);
    out->body = malloc(out->len + 1);
    out->status = out->body ? status : 503;
    out->type = type;
    if (out->body)
        memcpy(out->body, text, out->len + 1);
    else
        out->len = 0;
}

static enum MHD_Result s_queue(cpn_http_t *self, struct MHD_Connection *c, unsigned status,
                               const char *type, char *body, size_t len)
{
    if (status >= 500)
        self->counts.server_errors++;
    else if (status >= 400)
        self->counts.client_errors++;
    else
        self->counts.ok++;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body ? body : (char *)"",
                                        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result r = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* libmicrohttpd's own complaints, in our log format. */
static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[256];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_warn("http", "%s", msg);
}

/* Per-connection state in libmicrohttpd's con_cls: headers seen, a body seen. */
static char s_seen, s_body;

static enum MHD_Result s_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload, size_t *upload_len, void **con_cls)
{
    cpn_http_t *self = cls;
    (void)version;
    (void)upload;
    if (!*con_cls) { /* the headers: answer once any body has arrived */
        *con_cls = &s_seen;
        return MHD_YES;
    }
    if (*upload_len) { /* a body: read and dropped (nothing here takes one), refused below */
        *upload_len = 0;
        *con_cls = &s_body;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return s_queue(self, c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", NULL,
                       0);
    if (*con_cls == &s_body)
        return s_queue(self, c, MHD_HTTP_BAD_REQUEST, "text/plain; charset=utf-8", NULL, 0);
    cpn_http_reply_t rep = {.status = 404, .type = "text/plain; charset=utf-8"};
    self->fn(self->arg, url, &self->counts, &rep);
    return s_queue(self, c, rep.status, rep.type, rep.body, rep.len);
}

int cpn_http_start(const char *spec, cpn_http_fn fn, void *arg, cpn_http_t **out)
{
    struct sockaddr_in sa;
    const char *why = NULL;
    sigset_t all, old;
    *out = NULL;
    if (cpn_hostport_parse(spec, &sa, &why) != CPN_OK) {
        log_error("http", "%s: %s", spec ? spec : "(none)", why);
        return CPN_E_INVAL;
    }
    cpn_http_t *self = calloc(1, sizeof *self);
    if (!self)
        return CPN_E_NOMEM;
    self->fn = fn;
    self->arg = arg;
    /* The server's thread inherits this mask: signals go to the daemon's loop. AUTO: epoll
     * on Linux, so a daemon with more than FD_SETSIZE descriptors still serves. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    self->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                               NULL, s_on_request, self, MHD_OPTION_EXTERNAL_LOGGER,
                               s_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)CPN_HTTP_CONN_MAX,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CPN_HTTP_TIMEOUT_S,
                               MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!self->d) {
        log_error("http", "cannot serve on %s (address in use, or not ours?)", spec);
        free(self);
        return CPN_E_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->d, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : ntohs(sa.sin_port);
    *out = self;
    return CPN_OK;
}

void cpn_http_stop(cpn_http_t **self_p)
{
    cpn_http_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    MHD_stop_daemon(self->d);
    free(self);
    *self_p = NULL;
}

uint16_t cpn_http_port(const cpn_http_t *self)
{
    return self->port;
}
