/* Rule evaluation; see include/sealgate/rules.h. */
#include <stdarg.h>
#include <string.h>

#include <gmime/gmime.h>

#include "sealgate/rules.h"

void
sg_facts_init(struct sg_facts *f, const char *sender)
{
	memset(f, 0, sizeof(*f));
	f->sender = sender;
	f->labels = g_ptr_array_new_with_free_func(g_free);
}

void
sg_facts_from_msg(struct sg_facts *f, const struct sg_msg *msg)
{
	const char *subject = sg_msg_header(msg, "Subject");

	sg_facts_init(f, msg->mail_from);
	f->have_content = true;
	f->msg = msg;
	f->size = (long long)sg_spool_size(msg->spool);
	f->subject = subject != NULL ? sg_header_decode(subject) : NULL;
	for (guint i = 0; i < msg->headers->len; i++) {
		const struct sg_header *h = g_ptr_array_index(msg->headers, i);
		char *v;

		if (g_ascii_strcasecmp(h->name, "msip_labels") != 0)
			continue;
		v = sg_header_decode(h->value);
		sg_mip_labels(v, f->labels);
		g_free(v);
	}
}

void
sg_facts_clear(struct sg_facts *f)
{
	g_free(f->subject);
	if (f->labels != NULL)
		g_ptr_array_free(f->labels, TRUE);
	memset(f, 0, sizeof(*f));
}

bool
sg_glob_match(const char *pattern, const char *addr)
{
	char *p = g_ascii_strdown(pattern, -1);
	char *a = g_ascii_strdown(addr, -1);
	const char *subject = a;
	bool match;

	if (strchr(p, '@') == NULL) {
		const char *at = strrchr(a, '@');

		subject = at != NULL ? at + 1 : "";
	}
	match = g_pattern_match_simple(p, subject);
	g_free(p);
	g_free(a);
	return match;
}

bool
sg_rule_envelope_only(const struct sg_rule *rule)
{
	const struct sg_cond *c = &rule->when;

	return c->subject_tag == NULL && c->header.name == NULL &&
	    (c->label == NULL || c->label->len == 0) && c->size_over == 0;
}

static bool
any_glob(const GPtrArray *globs, const char *addr)
{
	for (guint i = 0; i < globs->len; i++)
		if (sg_glob_match(g_ptr_array_index(globs, i), addr))
			return true;
	return false;
}

/* v without white space (ASCII or Unicode, e.g. no-break space) at
 * either end, in place. */
static char *
trim_value(char *v)
{
	char *start = v, *end = v + strlen(v), *prev;

	while (*start && g_unichar_isspace(g_utf8_get_char_validated(start, -1)))
		start = g_utf8_next_char(start);
	while (end > start) {
		prev = g_utf8_find_prev_char(start, end);
		if (prev == NULL ||
		    !g_unichar_isspace(g_utf8_get_char_validated(prev, -1)))
			break;
		end = prev;
	}
	memmove(v, start, (size_t)(end - start));
	v[end - start] = '\0';
	return v;
}

static bool
header_matches(const struct sg_cond *c, const struct sg_msg *msg)
{
	for (guint i = 0; i < msg->headers->len; i++) {
		const struct sg_header *h = g_ptr_array_index(msg->headers, i);
		char *v;
		bool m;

		if (g_ascii_strcasecmp(h->name, c->header.name) != 0)
			continue;
		/* The unfolded, decoded value without the white space around
		 * it: folding and blanks never hide a value from a rule. */
		v = trim_value(sg_header_decode(h->value));
		m = g_regex_match(c->header.re, v, 0, NULL);
		g_free(v);
		if (m)
			return true;
	}
	return false;
}

static bool
label_matches(const GPtrArray *want, const GPtrArray *have)
{
	for (guint i = 0; i < want->len; i++)
		for (guint j = 0; j < have->len; j++)
			if (g_ascii_strcasecmp(g_ptr_array_index(want, i),
			    g_ptr_array_index(have, j)) == 0)
				return true;
	return false;
}

static bool
fail(GString *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool
fail(GString *why, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL) {
		va_start(ap, fmt);
		g_string_vprintf(why, fmt, ap);
		va_end(ap);
	}
	return false;
}

static const char *
first(const GPtrArray *a)
{
	return a->len ? g_ptr_array_index(a, 0) : "";
}

bool
sg_rule_matches(const struct sg_rule *rule, const struct sg_facts *f,
		const char *rcpt, GString *why)
{
	const struct sg_cond *c = &rule->when;
	const char *dom = strrchr(rcpt, '@');
	bool found;

	if (c->sender && c->sender->len && !any_glob(c->sender, f->sender))
		return fail(why, "sender <%s> does not match %s%s", f->sender,
		    first(c->sender), c->sender->len > 1 ? ", ..." : "");
	if (c->recipient && c->recipient->len && !any_glob(c->recipient, rcpt))
		return fail(why, "recipient does not match %s%s",
		    first(c->recipient), c->recipient->len > 1 ? ", ..." : "");
	if (c->recipient_domain && c->recipient_domain->len) {
		found = false;
		for (guint i = 0; i < c->recipient_domain->len && dom; i++)
			found |= sg_policy_domain_matches(
			    g_ptr_array_index(c->recipient_domain, i), dom + 1);
		if (!found)
			return fail(why, "recipient domain is not %s%s",
			    first(c->recipient_domain),
			    c->recipient_domain->len > 1 ? ", ..." : "");
	}
	if (!sg_rule_envelope_only(rule) && !f->have_content)
		return fail(why, "needs the message content (not given)");
	if (c->subject_tag != NULL &&
	    (f->subject == NULL || !sg_subject_has_tag(f->subject, c->subject_tag)))
		return fail(why, "subject tag \"%s\" not in the Subject",
		    c->subject_tag);
	if (c->header.name != NULL && !header_matches(c, f->msg))
		return fail(why, "no %s header matching \"%s\"", c->header.name,
		    c->header.matches);
	if (c->label && c->label->len && !label_matches(c->label, f->labels))
		return fail(why, "no MIP label %s%s", first(c->label),
		    c->label->len > 1 ? ", ..." : "");
	if (c->size_over > 0 && f->size <= c->size_over)
		return fail(why, "message is not over %lld bytes", c->size_over);
	return true;
}

static void
decision_default(const struct sg_policy *pol, struct sg_decision *out)
{
	memset(out, 0, sizeof(*out));
	out->action = pol->out_default.action;
	out->methods = &pol->out_default.methods;
	out->on_missing_key = pol->out_default.on_missing_key;
	out->smime_cipher = pol->out_default.smime_cipher;
	out->smime_key_transport = pol->out_default.smime_key_transport;
}

void
sg_policy_decide(const struct sg_policy *pol, const struct sg_facts *f,
		 const char *rcpt, struct sg_decision *out)
{
	decision_default(pol, out);
	for (guint i = 0; i < pol->rules->len; i++) {
		const struct sg_rule *r = g_ptr_array_index(pol->rules, i);

		if (!sg_rule_matches(r, f, rcpt, NULL))
			continue;
		out->rule = r->name;
		out->action = r->action;
		if (r->methods.n > 0)
			out->methods = &r->methods;
		out->on_missing_key = r->on_missing_key;
		if (r->smime_cipher >= 0)
			out->smime_cipher = r->smime_cipher;
		if (r->smime_key_transport >= 0)
			out->smime_key_transport = r->smime_key_transport;
		out->strip_tag = r->strip_tag && r->when.subject_tag != NULL;
		out->subject_tag = r->when.subject_tag;
		return;
	}
}

const struct sg_methods *
sg_policy_envelope_methods(const struct sg_policy *pol, const char *sender,
			   const char *rcpt)
{
	struct sg_facts f;
	const struct sg_methods *m = &pol->out_default.methods;

	sg_facts_init(&f, sender);
	for (guint i = 0; i < pol->rules->len; i++) {
		const struct sg_rule *r = g_ptr_array_index(pol->rules, i);

		if (!sg_rule_envelope_only(r) || !sg_rule_matches(r, &f, rcpt, NULL))
			continue;
		if (r->methods.n > 0)
			m = &r->methods;
		break;
	}
	sg_facts_clear(&f);
	return m;
}
