/* The milter's counters and their endpoint (gateway.metrics): OpenMetrics
 * text at /metrics over HTTP, served by libmicrohttpd's own thread. Labels
 * carry only fixed words, rule names and method names: never an address,
 * message content or key material. The milter's threads count under one
 * short lock per message. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "sealgate/pipeline.h"
#include "sealgate/policy.h"
#include "sealgate.h"

/* Upper bounds of the latency histogram, in seconds. */
static const double bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
	2.5, 5, 10, 30,
};
#define NBOUNDS G_N_ELEMENTS(bounds)

/* A labelled counter family: the label set as text -> count. */
struct family {
	const char *name;       /* without _total */
	const char *help;
	GHashTable *values;     /* char * -> guint64 * */
};

static struct {
	pthread_mutex_t lock;
	bool on;
	struct MHD_Daemon *daemon;
	sg_metrics_gauges_fn gauges;
	struct family messages, rejects, tempfails, deferred, decryptions,
	    signatures, reloads;
	guint64 buckets[NBOUNDS + 1];   /* the last: +Inf */
	guint64 count;
	double sum;
	gint64 in_flight;
	time_t started;
} m = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.messages = { "sealgate_messages", "Messages by direction, action, "
	    "method and outcome (the milter's verdict)", NULL },
	.rejects = { "sealgate_rejects", "Refusals (5xx) by deciding rule "
	    "(empty: none) and cause", NULL },
	.tempfails = { "sealgate_tempfails", "Temporary failures (4xx) by "
	    "cause", NULL },
	.deferred = { "sealgate_recipients_deferred", "Recipients deferred at "
	    "RCPT to a transaction of their own, by cause", NULL },
	.decryptions = { "sealgate_inbound_decryptions", "Inbound messages by "
	    "decryption result (X-Sealgate-Decrypted) and reason", NULL },
	.signatures = { "sealgate_inbound_signatures", "Inbound messages by "
	    "signature status", NULL },
	.reloads = { "sealgate_policy_reloads", "Policy reloads (SIGUSR1) by "
	    "result", NULL },
};

static struct family *const families[] = {
	&m.messages, &m.rejects, &m.tempfails, &m.deferred, &m.decryptions,
	&m.signatures, &m.reloads,
};

/* A label value as OpenMetrics writes it: backslash, quote and line feed
 * escaped. NULL counts as empty. */
static void
append_label(GString *out, const char *name, const char *value)
{
	if (out->len > 0)
		g_string_append_c(out, ',');
	g_string_append_printf(out, "%s=\"", name);
	for (const char *p = value != NULL ? value : ""; *p; p++) {
		if (*p == '\\' || *p == '"')
			g_string_append_printf(out, "\\%c", *p);
		else if (*p == '\n')
			g_string_append(out, "\\n");
		else
			g_string_append_c(out, *p);
	}
	g_string_append_c(out, '"');
}

/* Adds one to the counter of the label set (name, value pairs ending in
 * NULL). Called with m.lock held. */
static void
count(struct family *f, ...)
{
	GString *labels = g_string_new(NULL);
	const char *name;
	guint64 *n;
	va_list ap;

	va_start(ap, f);
	while ((name = va_arg(ap, const char *)) != NULL)
		append_label(labels, name, va_arg(ap, const char *));
	va_end(ap);
	n = g_hash_table_lookup(f->values, labels->str);
	if (n == NULL) {
		n = g_new0(guint64, 1);
		g_hash_table_insert(f->values, g_string_free(labels, FALSE), n);
	} else {
		g_string_free(labels, TRUE);
	}
	(*n)++;
}

/* Counts a refusal (with m.lock held). The cause as a label value:
 * lower case, blanks as '-' ("MIME parser" -> "mime-parser"). */
static void
count_refusal(enum sg_verdict v, const char *rule, const char *cause)
{
	char word[64];

	g_strlcpy(word, cause != NULL ? cause : "", sizeof(word));
	for (char *p = word; *p; p++)
		*p = *p == ' ' ? '-' : g_ascii_tolower(*p);
	if (v == SG_VERDICT_REJECT)
		count(&m.rejects, "rule", rule, "cause", word, NULL);
	else if (v == SG_VERDICT_TEMPFAIL)
		count(&m.tempfails, "cause", word, NULL);
}

void
sg_metrics_message(const struct sg_result *res, long long busy_ns)
{
	double s = busy_ns / 1e9;
	unsigned b = 0;

	if (!m.on)
		return;
	pthread_mutex_lock(&m.lock);
	count(&m.messages, "direction", res->direction, "action", res->action,
	    "method", res->method, "outcome", sg_verdict_name(res->verdict),
	    NULL);
	count_refusal(res->verdict, res->rule, res->cause);
	if (res->decryption != NULL)
		count(&m.decryptions, "result", res->decryption, "reason",
		    res->decryption_reason, NULL);
	if (res->signature != NULL)
		count(&m.signatures, "status", res->signature, NULL);
	while (b < NBOUNDS && s > bounds[b])
		b++;
	m.buckets[b]++;
	m.count++;
	m.sum += s;
	pthread_mutex_unlock(&m.lock);
}

void
sg_metrics_refusal(enum sg_verdict v, const char *cause)
{
	if (!m.on)
		return;
	pthread_mutex_lock(&m.lock);
	count_refusal(v, NULL, cause);
	pthread_mutex_unlock(&m.lock);
}

/* One to a family of one label. */
static void
count_one(struct family *f, const char *label, const char *value)
{
	if (!m.on)
		return;
	pthread_mutex_lock(&m.lock);
	count(f, label, value, NULL);
	pthread_mutex_unlock(&m.lock);
}

void
sg_metrics_deferred(const char *cause)
{
	count_one(&m.deferred, "cause", cause);
}

void
sg_metrics_reload(bool ok)
{
	count_one(&m.reloads, "result", ok ? "ok" : "failed");
}

void
sg_metrics_in_flight(int delta)
{
	if (!m.on)
		return;
	pthread_mutex_lock(&m.lock);
	m.in_flight += delta;
	pthread_mutex_unlock(&m.lock);
}

static int
compare_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One family, its samples in a stable order. */
static void
render_family(GString *out, const struct family *f)
{
	guint n;
	gpointer *keys = g_hash_table_get_keys_as_array(f->values, &n);

	qsort(keys, n, sizeof(*keys), compare_keys);
	g_string_append_printf(out, "# TYPE %s counter\n# HELP %s %s.\n",
	    f->name, f->name, f->help);
	for (guint i = 0; i < n; i++)
		g_string_append_printf(out, "%s_total{%s} %" G_GUINT64_FORMAT "\n",
		    f->name, (char *)keys[i],
		    *(guint64 *)g_hash_table_lookup(f->values, keys[i]));
	g_free(keys);
}

/* A bucket's bound as OpenMetrics wants "le" values (its section
 * "Canonical Numbers"): %g, and ".0" when that shows neither a decimal
 * point nor an exponent ("1.0", not "1"). */
static void
canonical_number(char *buf, size_t len, double v)
{
	g_ascii_formatd(buf, len, "%g", v);
	if (strpbrk(buf, ".e") == NULL)
		g_strlcat(buf, ".0", len);
}

/* The whole exposition. (transfer full) */
static GString *
render(void)
{
	GString *out = g_string_sized_new(4096);
	struct sg_metrics_gauges g = { 0 };
	guint64 cum = 0;
	char num[G_ASCII_DTOSTR_BUF_SIZE];

	/* Outside the lock: it may build a keystore snapshot. */
	if (m.gauges != NULL)
		m.gauges(&g);
	pthread_mutex_lock(&m.lock);
	for (size_t i = 0; i < G_N_ELEMENTS(families); i++)
		render_family(out, families[i]);
	g_string_append(out, "# TYPE sealgate_message_seconds histogram\n"
	    "# HELP sealgate_message_seconds Time sealgate spent on a message "
	    "in its callbacks (the delay it adds; busy= in the log).\n");
	for (size_t b = 0; b <= NBOUNDS; b++) {
		cum += m.buckets[b];
		if (b < NBOUNDS)
			canonical_number(num, sizeof(num), bounds[b]);
		g_string_append_printf(out, "sealgate_message_seconds_bucket"
		    "{le=\"%s\"} %" G_GUINT64_FORMAT "\n",
		    b < NBOUNDS ? num : "+Inf", cum);
	}
	g_ascii_formatd(num, sizeof(num), "%.9f", m.sum);
	g_string_append_printf(out, "sealgate_message_seconds_count %"
	    G_GUINT64_FORMAT "\nsealgate_message_seconds_sum %s\n", m.count, num);
	g_string_append_printf(out, "# TYPE sealgate_messages_in_flight gauge\n"
	    "# HELP sealgate_messages_in_flight Messages between MAIL FROM and "
	    "their end.\nsealgate_messages_in_flight %" G_GINT64_FORMAT "\n",
	    m.in_flight);
	pthread_mutex_unlock(&m.lock);
	g_string_append_printf(out, "# TYPE sealgate_keys_expiring gauge\n"
	    "# HELP sealgate_keys_expiring Keys and certificates of the "
	    "keystore usable now that stop being usable within 30 days.\n"
	    "sealgate_keys_expiring{kind=\"openpgp\"} %u\n"
	    "sealgate_keys_expiring{kind=\"smime\"} %u\n"
	    "sealgate_keys_expiring{kind=\"smime-anchor\"} %u\n"
	    "# TYPE sealgate_keystore_snapshot gauge\n"
	    "# HELP sealgate_keystore_snapshot 1 while the milter has a "
	    "keystore snapshot (without one, mail is deferred).\n"
	    "sealgate_keystore_snapshot %d\n"
	    "# TYPE sealgate_start_time_seconds gauge\n"
	    "# HELP sealgate_start_time_seconds When the milter started.\n"
	    "sealgate_start_time_seconds %lld\n# EOF\n",
	    g.expiring.openpgp, g.expiring.smime, g.expiring.anchors,
	    g.snapshot ? 1 : 0, (long long)m.started);
	return out;
}

static enum MHD_Result
reply(struct MHD_Connection *conn, unsigned status, const char *type,
      const char *body, size_t len, const char *allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len,
	    (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (allow != NULL)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Whether the request announces a body (a length other than 0, or
 * chunks). */
static bool
has_body(struct MHD_Connection *conn)
{
	const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_LENGTH);

	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL ||
	    (len != NULL && strcmp(len, "0") != 0);
}

static enum MHD_Result
serve(void *cls, struct MHD_Connection *conn, const char *url,
      const char *method, const char *version, const char *upload,
      size_t *upload_len, void **state)
{
	static const char text[] = "text/plain; charset=utf-8";
	static int seen;
	enum MHD_Result ret;
	GString *body;

	(void)cls;
	(void)version;
	(void)upload;
	/* A refusal is answered at the first call, before any body is read:
	 * libmicrohttpd then closes the connection instead of reading a body
	 * of any length for nothing. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text,
		    "only GET\n", 9, "GET, HEAD");
	if (strcmp(url, "/metrics") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, text,
		    "not found; the metrics are at /metrics\n", 39, NULL);
	if (has_body(conn))
		return reply(conn, MHD_HTTP_BAD_REQUEST, text,
		    "a request for the metrics has no body\n", 38, NULL);
	/* Answered at the second call, when the request is complete, so
	 * that the connection stays open for the scraper's next one. */
	if (*state == NULL) {
		*state = &seen;
		return MHD_YES;
	}
	if (*upload_len != 0) {
		*upload_len = 0;
		return MHD_YES;
	}
	body = render();
	ret = reply(conn, MHD_HTTP_OK,
	    "application/openmetrics-text; version=1.0.0; charset=utf-8",
	    body->str, body->len, NULL);
	g_string_free(body, TRUE);
	return ret;
}

/*
 * libmicrohttpd has a line to say about every connection it refuses or
 * cuts off (over the connection limits, a malformed request), and any
 * local user can open connections by the thousand: at most LOG_BURST of
 * its lines per LOG_WINDOW seconds; the next line after a window says how
 * many were left out.
 */
#define LOG_BURST 10
#define LOG_WINDOW 10

static struct {
	pthread_mutex_t lock;
	time_t start;           /* of the window (CLOCK_MONOTONIC seconds) */
	unsigned lines;         /* logged in the window */
	unsigned dropped;       /* left out since the last line logged */
} mlog = { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0 };

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct timespec now;
	unsigned dropped = 0;
	bool say;
	char *text;

	(void)cls;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&mlog.lock);
	if (mlog.lines == 0 || now.tv_sec - mlog.start >= LOG_WINDOW) {
		mlog.start = now.tv_sec;
		mlog.lines = 0;
	}
	say = mlog.lines < LOG_BURST;
	if (say) {
		mlog.lines++;
		dropped = mlog.dropped;
		mlog.dropped = 0;
	} else {
		mlog.dropped++;
	}
	pthread_mutex_unlock(&mlog.lock);
	if (!say)
		return;
	if (dropped > 0)
		sg_log(SG_LOG_WARNING, NULL, "metrics: %u line(s) of the HTTP "
		    "server left out (at most %d per %d seconds)", dropped,
		    LOG_BURST, LOG_WINDOW);
	text = g_strdup_vprintf(fmt, ap);
	g_strchomp(text);
	sg_log(SG_LOG_WARNING, NULL, "metrics: %s", text);
	g_free(text);
}

/* A listening socket on ss, -1 with errno set. Opened here rather than by
 * libmicrohttpd, which would only log why it failed. */
static int
listen_on(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int on = 1, e;

	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
	    (ss->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &on, sizeof(on)) < 0) ||
	    bind(fd, (const struct sockaddr *)ss, len) < 0 ||
	    listen(fd, 16) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

bool
sg_metrics_start(const char *listen, sg_metrics_gauges_fn gauges)
{
	struct sockaddr_storage ss;
	socklen_t len;
	unsigned port;
	int fd, e;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	    MHD_USE_ERROR_LOG;

	m.started = time(NULL);
	if (listen == NULL)
		return true;
	if (!sg_policy_parse_listen(listen, &ss, &len)) {
		sg_tprintf(stderr, "sealgate: gateway.metrics: invalid address "
		    "%s\n", listen);
		return false;
	}
	for (size_t i = 0; i < G_N_ELEMENTS(families); i++)
		families[i]->values = g_hash_table_new_full(g_str_hash,
		    g_str_equal, g_free, g_free);
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	fd = listen_on(&ss, len);
	if (fd < 0) {
		e = errno;
		port = ntohs(ss.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)&ss)->sin6_port :
		    ((struct sockaddr_in *)&ss)->sin_port);
		sg_tprintf(stderr, "sealgate: gateway.metrics: cannot listen on "
		    "%s: %s%s\n", listen, g_strerror(e),
		    e == EACCES && port < 1024 ? " (the endpoint opens "
		    "after the milter gave up its privileges: use a port above "
		    "1023)" : "");
		return false;
	}
	m.gauges = gauges;
	m.on = true;
	/* Few connections, short ones, small requests: a scraper, not a
	 * web server. */
	m.daemon = MHD_start_daemon(flags, 0, NULL, NULL, serve, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_CONNECTION_LIMIT, 8U,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, 4U,
	    MHD_OPTION_CONNECTION_TIMEOUT, 10U,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
	    MHD_OPTION_END);
	if (m.daemon == NULL) {
		m.on = false;
		sg_tprintf(stderr, "sealgate: gateway.metrics: cannot start the "
		    "HTTP server on %s\n", listen);
		return false;
	}
	return true;
}

void
sg_metrics_stop(void)
{
	if (m.daemon != NULL)
		MHD_stop_daemon(m.daemon);
	m.daemon = NULL;
}
