/* The outcome of a run (struct sg_result): verdict, SMTP reply, reason
 * for the log; see include/sealgate/pipeline.h. */
#include <stdarg.h>
#include <string.h>

#include "pipeline_int.h"

void
sg_result_init(struct sg_result *res)
{
	memset(res, 0, sizeof(*res));
	res->verdict = SG_VERDICT_ACCEPT;
	res->action = "pass";
	res->direction = "unknown";
	res->fprs = g_ptr_array_new_with_free_func(g_free);
	sg_edits_init(&res->edits);
}

void
sg_result_clear(struct sg_result *res)
{
	g_free(res->text);
	g_free(res->reason);
	g_free(res->cipher_why);
	g_free(res->caps_recorded);
	g_free(res->caps_error);
	if (res->fprs != NULL)
		g_ptr_array_free(res->fprs, TRUE);
	sg_edits_clear(&res->edits);
	memset(res, 0, sizeof(*res));
}

const char *
sg_verdict_name(enum sg_verdict v)
{
	switch (v) {
	case SG_VERDICT_ACCEPT:		return "accept";
	case SG_VERDICT_REJECT:		return "reject";
	case SG_VERDICT_TEMPFAIL:	return "tempfail";
	case SG_VERDICT_QUARANTINE:	return "quarantine";
	}
	return "tempfail";
}

void
sg_result_reply(struct sg_result *res, enum sg_verdict v, const char *cause,
		const char *rcode, const char *xcode, const char *fmt, ...)
{
	va_list ap;

	res->verdict = v;
	res->cause = cause;
	res->action = sg_verdict_name(v);
	g_strlcpy(res->rcode, rcode, sizeof(res->rcode));
	g_strlcpy(res->xcode, xcode, sizeof(res->xcode));
	g_free(res->text);
	va_start(ap, fmt);
	res->text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	/* Edits never apply to a refused message. */
	sg_edits_clear(&res->edits);
	sg_edits_init(&res->edits);
}

void
sg_result_reason(struct sg_result *res, const char *fmt, ...)
{
	va_list ap;

	g_free(res->reason);
	va_start(ap, fmt);
	res->reason = g_strdup_vprintf(fmt, ap);
	va_end(ap);
}

int
sg_result_internal(struct sg_result *res, int rc, const char *what,
		   const struct sg_err *err)
{
	sg_result_reply(res, SG_VERDICT_TEMPFAIL, what, "451", "4.3.0",
	    "sealgate: temporary failure, try again later");
	sg_result_reason(res, "%s: %s", what, err != NULL && *err->msg ? err->msg
	    : sg_strerror(rc));
	return rc < 0 ? rc : SG_EIO;
}

