/* Logging for the daemon and the commands. Every line starts with the
 * queue id. Callers never pass message content or key material. */
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include <glib.h>

#include "sealgate.h"

static bool log_stderr = true;

void
sg_log_open(bool to_stderr)
{
	log_stderr = to_stderr;
	if (!to_stderr)
		openlog("sealgate", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

static int
syslog_level(enum sg_log_level level)
{
	switch (level) {
	case SG_LOG_ERR:	return LOG_ERR;
	case SG_LOG_WARNING:	return LOG_WARNING;
	case SG_LOG_INFO:	return LOG_INFO;
	default:		return LOG_DEBUG;
	}
}

/* The line as it is, with the destination's prefix. */
static void
emit(enum sg_log_level level, const char *qid, const char *msg)
{
	char stamp[32];
	struct tm tm;
	time_t now;

	if (log_stderr) {
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		if (qid != NULL)
			fprintf(stderr, "%s sealgate: %s: %s\n", stamp, qid, msg);
		else
			fprintf(stderr, "%s sealgate: %s\n", stamp, msg);
	} else if (qid != NULL) {
		syslog(syslog_level(level), "%s: %s", qid, msg);
	} else {
		syslog(syslog_level(level), "%s", msg);
	}
}

void
sg_log_line(enum sg_log_level level, const char *line)
{
	emit(level, NULL, line);
}

void
sg_log(enum sg_log_level level, const char *qid, const char *fmt, ...)
{
	va_list ap;
	char *raw, *msg;

	va_start(ap, fmt);
	raw = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	/* One physical line per entry, no control characters, whatever a
	 * value contained. */
	msg = sg_escape(raw);
	g_free(raw);
	emit(level, qid != NULL ? qid : "-", msg);
	g_free(msg);
}
