/* The milter's line per message: key=value pairs, or one JSON object
 * (gateway.log_format). What a sender chose -- its addresses, the number
 * of recipients -- can neither forge a field nor make the line too long
 * for a syslog daemon; message content and key material are never in it. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "sealgate/msg.h"
#include "sealgate.h"

/* A value of the key=value line with the characters of special (and the
 * backslash, to keep it unambiguous) as \xHH: an address's quoted local
 * part may hold blanks, quotes and '>' that would end its field and start
 * a forged one. (transfer full) */
static char *
text_value(const char *s, const char *special)
{
	GString *out = g_string_new(NULL);

	for (const char *p = s != NULL ? s : ""; *p; p++) {
		if (*p == '\\' || strchr(special, *p) != NULL)
			g_string_append_printf(out, "\\x%02x", (guchar)*p);
		else
			g_string_append_c(out, *p);
	}
	return g_string_free(out, FALSE);
}

/* The key=value form of the line per message. The keys used are listed
 * up to TEXT_KEYS_MAX bytes, then counted: a sender chooses how many
 * recipients (and keys) a message has. */
#define TEXT_KEYS_MAX 2048

static void
log_text(const struct sg_msglog *l, const struct sg_result *res)
{
	GString *keys = g_string_new(NULL);
	/* S/MIME encryption: the content encryption and why. */
	char *cipher = res->cipher == NULL ? g_strdup("") :
	    g_strdup_printf(" cipher=\"%s (%s)\"", res->cipher,
	    res->cipher_why ? res->cipher_why : "");
	char *from = text_value(l->msg->mail_from, " \t\"<>=");
	char *reason = text_value(res->reason, "\"");
	char t[G_ASCII_DTOSTR_BUF_SIZE], b[G_ASCII_DTOSTR_BUF_SIZE];
	guint i;

	for (i = 0; i < res->fprs->len && keys->len < TEXT_KEYS_MAX; i++)
		g_string_append_printf(keys, "%s%s", i ? "," : "",
		    (char *)g_ptr_array_index(res->fprs, i));
	if (i < res->fprs->len)
		g_string_append_printf(keys, ",+%u", res->fprs->len - i);
	/* Not printf's %f, which follows the locale (1,234). */
	g_ascii_formatd(t, sizeof(t), "%.3f", l->ms);
	g_ascii_formatd(b, sizeof(b), "%.3f", l->busy_ms);
	sg_log(SG_LOG_INFO, l->qid, "from=<%s> rcpts=%u class=%s verdict=%s "
	    "rule=%s action=%s method=%s keys=%s%s reason=\"%s\" time=%sms "
	    "busy=%sms",
	    from, l->msg->rcpts->len, sg_class_name(l->cls),
	    sg_verdict_name(res->verdict), res->rule ? res->rule : "-",
	    res->action,
	    res->method ? res->method : "-", keys->len ? keys->str : "-", cipher,
	    reason, t, b);
	g_string_free(keys, TRUE);
	g_free(cipher);
	g_free(from);
	g_free(reason);
}

static void
json_member(GString *out, const char *name, const char *value)
{
	g_string_append_printf(out, ",\"%s\":", name);
	sg_json_string(out, value);
}

/*
 * A sender chooses how many recipients a message has (up to
 * SG_MAX_RECIPIENTS): listed in full, 1,000 of them made a line of 60 KB,
 * which syslog daemons cut (rsyslog at 8 KB by default) and journald
 * splits (LineMax, 48 KB), leaving a line that is not JSON. The lists keep
 * to these sizes in bytes; the rest is counted in *_omitted.
 */
#define JSON_RCPTS_MAX 4096
#define JSON_KEYS_MAX 2048

/* Appends item (a JSON value) to the list being written in out when it
 * fits in max bytes with what *used counts, and empties item; false when
 * it did not fit. After one that did not fit, none does. */
static bool
json_list_item(GString *out, GString *item, size_t *used, size_t max)
{
	bool fits = *used != SIZE_MAX && *used + item->len + 1 <= max;

	if (fits) {
		if (*used > 0)
			g_string_append_c(out, ',');
		g_string_append_len(out, item->str, item->len);
		*used += item->len + 1;
	} else {
		*used = SIZE_MAX;
	}
	g_string_truncate(item, 0);
	return fits;
}

/* The JSON form (gateway.log_format: json): one object per line. */
static void
log_json(const struct sg_msglog *l, const struct sg_result *res)
{
	GString *out = g_string_new("{\"ts\":"), *item = g_string_new(NULL);
	GDateTime *now = g_date_time_new_now_utc();
	char *ts = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S.%fZ");
	char num[G_ASCII_DTOSTR_BUF_SIZE];
	size_t used = 0;
	unsigned omitted = 0;

	sg_json_string(out, ts);
	json_member(out, "queue_id", l->qid);
	json_member(out, "direction", res->direction);
	json_member(out, "from", l->msg->mail_from);
	json_member(out, "class", sg_class_name(l->cls));
	json_member(out, "rule", res->rule);
	json_member(out, "action", res->action);
	json_member(out, "method", res->method);
	json_member(out, "outcome", sg_verdict_name(res->verdict));
	json_member(out, "cause", res->cause);
	g_string_append(out, ",\"recipients\":[");
	for (guint i = 0; i < l->msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(l->msg->rcpts, i);

		g_string_append(item, "{\"address\":");
		sg_json_string(item, r->addr);
		json_member(item, "class", sg_class_name(r->cls));
		json_member(item, "key", r->key_fpr);
		g_string_append_c(item, '}');
		omitted += !json_list_item(out, item, &used, JSON_RCPTS_MAX);
	}
	g_string_append_printf(out, "],\"recipients_omitted\":%u,\"keys\":[",
	    omitted);
	used = omitted = 0;
	for (guint i = 0; i < res->fprs->len; i++) {
		sg_json_string(item, g_ptr_array_index(res->fprs, i));
		omitted += !json_list_item(out, item, &used, JSON_KEYS_MAX);
	}
	g_string_append_printf(out, "],\"keys_omitted\":%u", omitted);
	json_member(out, "cipher", res->cipher);
	json_member(out, "decryption", res->decryption);
	json_member(out, "decryption_reason", res->decryption_reason);
	json_member(out, "signature", res->signature);
	json_member(out, "reason", res->reason);
	/* Not printf's %f: under a locale with a decimal comma (setlocale
	 * in main) it would write 1,234, which is not JSON. */
	g_string_append(out, ",\"ms\":");
	g_string_append(out, g_ascii_formatd(num, sizeof(num), "%.3f", l->ms));
	g_string_append(out, ",\"busy_ms\":");
	g_string_append(out, g_ascii_formatd(num, sizeof(num), "%.3f",
	    l->busy_ms));
	g_string_append_c(out, '}');
	sg_log_line(SG_LOG_INFO, out->str);
	g_string_free(out, TRUE);
	g_string_free(item, TRUE);
	g_free(ts);
	g_date_time_unref(now);
}

void
sg_msglog_write(const struct sg_msglog *l, const struct sg_result *res)
{
	if (l->format == SG_LOG_FORMAT_JSON)
		log_json(l, res);
	else
		log_text(l, res);
}
