/* Message pipeline: classify, inspect, encrypt, and describe the result as
 * edits. Knows nothing of libmilter or syslog. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <gmime/gmime.h>

#include "sealgate/mime.h"
#include "sealgate/openpgp.h"
#include "sealgate/pipeline.h"
#include "sealgate/rewrite.h"
#include "inbound.h"
#include "pipeline_int.h"
#include "sealgate/plan.h"
#include "sealgate/rules.h"
#include "sealgate/smime.h"

void
sg_result_init(struct sg_result *res)
{
	memset(res, 0, sizeof(*res));
	res->verdict = SG_VERDICT_ACCEPT;
	res->action = "pass";
	res->fprs = g_ptr_array_new_with_free_func(g_free);
	sg_edits_init(&res->edits);
}

void
sg_result_clear(struct sg_result *res)
{
	g_free(res->text);
	g_free(res->reason);
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

const char *
sg_class_name(enum sg_class cls)
{
	switch (cls) {
	case SG_CLASS_PASS:	return "pass";
	case SG_CLASS_INTERNAL:	return "internal";
	case SG_CLASS_PLAIN:	return "plain";
	case SG_CLASS_OPENPGP:	return "openpgp";
	case SG_CLASS_SMIME:	return "smime";
	default:		return "unclassified";
	}
}

void
sg_result_reply(struct sg_result *res, enum sg_verdict v, const char *rcode,
		const char *xcode, const char *fmt, ...)
{
	va_list ap;

	res->verdict = v;
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
	sg_result_reply(res, SG_VERDICT_TEMPFAIL, "451", "4.3.0",
	    "sealgate: temporary failure, try again later");
	sg_result_reason(res, "%s: %s", what, err != NULL && *err->msg ? err->msg
	    : sg_strerror(rc));
	return rc < 0 ? rc : SG_EIO;
}

bool
sg_pipeline_outbound(const struct sg_policy *pol, const struct sg_msg *msg)
{
	if (*msg->mail_from == '\0' || !sg_policy_is_internal(pol, msg->mail_from))
		return false;
	return msg->auth_user != NULL ||
	    sg_policy_trusted_ip(pol, msg->client_ip);
}

char *
sg_pipeline_direction(const struct sg_policy *pol, const struct sg_msg *msg)
{
	if (sg_pipeline_outbound(pol, msg))
		return g_strdup_printf("internal sender, %s",
		    msg->auth_user ? "authenticated client"
		    : "client in trusted_networks");
	if (*msg->mail_from == '\0')
		return g_strdup("null sender");
	if (!sg_policy_is_internal(pol, msg->mail_from))
		return g_strdup("sender is not in internal_domains");
	return g_strdup_printf("client %s is neither authenticated nor in "
	    "trusted_networks", msg->client_ip ? msg->client_ip : "(unknown)");
}

int
sg_classify_external(const struct sg_keystore *ks, const char *rcpt,
		     const struct sg_methods *methods,
		     sg_find_key_fn *const find[SG_MAX_METHODS],
		     enum sg_class *out, char *key_fpr, char **why)
{
	char fpr[SG_FPR_MAX];
	struct sg_err err = { 0 };
	GString *reasons;
	int rc;

	*out = SG_CLASS_PLAIN;
	reasons = g_string_new(NULL);
	for (unsigned i = 0; i < methods->n; i++) {
		bool pgp = methods->v[i] == SG_METHOD_OPENPGP;

		err.msg[0] = '\0';
		rc = find[methods->v[i]](ks, rcpt, fpr, &err);
		if (rc == SG_ENOKEY) {
			g_string_append_printf(reasons, "%s%s: %s",
			    reasons->len ? "; " : "", pgp ? "openpgp" : "smime",
			    err.msg);
			continue;
		}
		if (rc < 0) {
			if (why != NULL)
				*why = g_strdup(err.msg);
			g_string_free(reasons, TRUE);
			return rc;
		}
		*out = pgp ? SG_CLASS_OPENPGP : SG_CLASS_SMIME;
		if (key_fpr != NULL)
			g_strlcpy(key_fpr, fpr, SG_FPR_MAX);
		if (why != NULL)
			*why = g_strdup_printf("%s %s", pgp ? "OpenPGP key"
			    : "S/MIME certificate", fpr);
		g_string_free(reasons, TRUE);
		return SG_OK;
	}
	if (why != NULL)
		*why = g_strdup(reasons->len ? reasons->str
		    : "no method allowed");
	g_string_free(reasons, TRUE);
	return SG_OK;
}

int
sg_pipeline_classify(const struct sg_policy *pol, const struct sg_keystore *ks,
		     const struct sg_msg *msg, const char *rcpt,
		     enum sg_class *out, char *key_fpr, char **why)
{
	static sg_find_key_fn *const find[SG_MAX_METHODS] = {
		[SG_METHOD_OPENPGP] = sg_openpgp_find_key,
		[SG_METHOD_SMIME] = sg_smime_find_cert,
	};

	if (!sg_pipeline_outbound(pol, msg)) {
		*out = SG_CLASS_PASS;
		if (why != NULL)
			*why = sg_pipeline_direction(pol, msg);
		return SG_OK;
	}
	if (sg_policy_is_internal(pol, rcpt)) {
		*out = SG_CLASS_INTERNAL;
		if (why != NULL)
			*why = g_strdup("internal recipient");
		return SG_OK;
	}
	return sg_classify_external(ks, rcpt,
	    sg_policy_envelope_methods(pol, msg->mail_from, rcpt), find, out,
	    key_fpr, why);
}

int
sg_class_method(enum sg_class cls)
{
	switch (cls) {
	case SG_CLASS_OPENPGP:	return SG_METHOD_OPENPGP;
	case SG_CLASS_SMIME:	return SG_METHOD_SMIME;
	default:		return -1;
	}
}

bool
sg_class_has_key(enum sg_class cls, const struct sg_methods *methods)
{
	int m = sg_class_method(cls);

	return m >= 0 && sg_policy_allows_method(methods, m);
}

/* The class of the transaction. Recipients classified at RCPT time keep
 * that class (and key); the others are classified now. All must agree. */
static int
transaction_class(struct sg_msg *msg, const struct sg_policy *pol,
		  const struct sg_keystore *ks, struct sg_result *res,
		  enum sg_class *out)
{
	enum sg_class first = SG_CLASS_NONE;
	char fpr[SG_FPR_MAX];
	int rc;

	for (guint i = 0; i < msg->rcpts->len; i++) {
		struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		if (r->cls == SG_CLASS_NONE) {
			rc = sg_pipeline_classify(pol, ks, msg, r->addr, &r->cls,
			    fpr, NULL);
			if (rc < 0)
				return sg_result_internal(res, rc, "key lookup", NULL);
			if (sg_class_method(r->cls) >= 0)
				r->key_fpr = g_strdup(fpr);
		}
		if (first == SG_CLASS_NONE)
			first = r->cls;
		if (r->cls != first) {
			sg_result_reply(res, SG_VERDICT_TEMPFAIL, "452", "4.5.3",
			    "recipient <%s> needs a different treatment "
			    "(%s, not %s); deliver it in a separate transaction",
			    r->addr, sg_class_name(r->cls), sg_class_name(first));
			sg_result_reason(res, "mixed recipient classes");
			return SG_OK;
		}
		if (sg_class_method(r->cls) >= 0 && r->key_fpr == NULL)
			return sg_result_internal(res, SG_ENOKEY, "key lookup", NULL);
	}
	*out = first;
	return SG_OK;
}

/* Removes the rule's tag from the Subject. */
static void
strip_subject_tag(const struct sg_msg *msg, const struct sg_facts *facts,
		  const char *tag, struct sg_result *res)
{
	char *stripped, *value;

	if (facts->subject == NULL)
		return;
	stripped = sg_subject_strip_tag(facts->subject, tag);
	if (stripped == NULL)
		return;
	value = sg_subject_encode(stripped);
	if (sg_msg_header(msg, "Subject") != NULL)
		sg_edits_add(&res->edits, SG_HDR_CHANGE, "Subject", 1, value);
	g_free(value);
	g_free(stripped);
}

static const char *
rule_label(const char *rule)
{
	return rule != NULL ? rule : "outbound.default";
}

static bool
refuse_one(const struct sg_plan *plan, int m, struct sg_result *res)
{
	const char *what = plan->missing_what[m];
	bool sign = what != NULL && strcmp(what, "signing key") == 0;
	const char *rule = rule_label(plan->missing_rule[m]);

	char *denied;

	if (plan->missing[m] == NULL)
		return false;
	/* A client that may not sign as the sender is told so, naming it. */
	denied = sign && plan->signers.denied ?
	    g_strdup_printf(" (sender <%s> may not sign: %s)",
	    plan->sender, plan->signers.why[0]) : g_strdup("");
	if (m == SG_MISSING_REJECT)
		sg_result_reply(res, SG_VERDICT_REJECT, "550", "5.7.1",
		    "%s required by rule \"%s\"; no usable %s for: %s%s",
		    sign ? "signing" : "encryption", rule, what,
		    plan->missing[m]->str, denied);
	else
		sg_result_reply(res, SG_VERDICT_TEMPFAIL, "451", "4.7.1",
		    "%s required by rule \"%s\"; no usable %s for: %s%s; "
		    "try again later", sign ? "signing" : "encryption", rule, what,
		    plan->missing[m]->str, denied);
	sg_result_reason(res, "no usable %s (rule %s)%s", what, rule, denied);
	g_free(denied);
	return true;
}

bool
sg_plan_refusal(const struct sg_plan *plan, struct sg_result *res)
{
	/* Recipients without a usable key. */
	if (refuse_one(plan, SG_MISSING_REJECT, res) ||
	    refuse_one(plan, SG_MISSING_TEMPFAIL, res))
		return true;
	if (plan->conflict) {
		/* Rules that pick methods some recipients (or the sender)
		 * have no key for; never fall back to less protection. */
		sg_result_reply(res, SG_VERDICT_REJECT, "550", "5.7.1",
		    "the policy asks for different protection for the "
		    "recipients of this message; send to them separately");
		sg_result_reason(res, "conflicting outcomes in one transaction");
		return true;
	}
	return false;
}

/* Parses the message; a refusal in res when it is malformed. *prot says
 * how it is already encrypted as a whole, judged from its content: a
 * label alone never lets a message pass. */
static int
inspect_message(struct sg_msg *msg, struct sg_result *res,
		enum sg_protection *prot)
{
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	GMimeStream *stream;
	int rc;

	stream = sg_spool_stream(msg->spool, 0, -1);
	if (stream == NULL)
		return sg_result_internal(res, SG_EIO, "spool", NULL);
	rc = sg_mime_inspect(stream, &info, &err);
	g_object_unref(stream);
	if (rc == SG_EMALFORMED || rc == SG_ELIMIT) {
		sg_result_reply(res, SG_VERDICT_REJECT, "554", "5.6.0",
		    "malformed MIME message (%s); it was not sent", err.msg);
		sg_result_reason(res, "malformed: %s", err.msg);
		return SG_OK;
	}
	if (rc < 0)
		return sg_result_internal(res, rc, "MIME parser", &err);
	*prot = info.encrypted;
	return SG_OK;
}

/* An outbound transaction of one class: apply the rules, then protect or
 * pass, or refuse. */
static int
run_outbound(struct sg_msg *msg, const struct sg_policy *pol,
	     const struct sg_keystore *ks, enum sg_class cls,
	     struct sg_result *res)
{
	struct sg_plan plan;
	struct sg_facts facts;
	enum sg_protection prot = SG_PROT_NONE;
	int rc;

	sg_facts_from_msg(&facts, msg);
	rc = sg_plan_transaction(&plan, msg, pol, ks, cls, &facts);
	if (rc < 0) {
		rc = sg_result_internal(res, rc, "signing key lookup", NULL);
		goto out;
	}
	res->rule = plan.rule;
	if (sg_plan_refusal(&plan, res))
		goto out;
	if (plan.strip_tag != NULL)
		strip_subject_tag(msg, &facts, plan.strip_tag, res);
	if (!plan.encrypt && !plan.sign) {
		sg_result_reason(res, "%s (%s)", cls == SG_CLASS_PLAIN
		    ? "no usable key; the policy allows plain"
		    : "the policy asks for no protection", rule_label(plan.rule));
		goto out;
	}
	rc = inspect_message(msg, res, &prot);
	if (rc < 0 || res->verdict != SG_VERDICT_ACCEPT)
		goto out;
	if (prot != SG_PROT_NONE) {
		sg_result_reason(res, "already protected (%s)",
		    sg_mime_protection_name(prot));
		goto out;
	}
	rc = sg_protect(msg, pol, ks, &plan, res);
out:
	sg_plan_clear(&plan);
	sg_facts_clear(&facts);
	return rc;
}

static bool
all_internal(const struct sg_msg *msg, const struct sg_policy *pol)
{
	for (guint i = 0; i < msg->rcpts->len; i++)
		if (!sg_policy_is_internal(pol, ((struct sg_rcpt *)
		    g_ptr_array_index(msg->rcpts, i))->addr))
			return false;
	return true;
}

int
sg_pipeline_run(struct sg_msg *msg, const struct sg_policy *pol,
		const struct sg_keystore *ks, struct sg_result *res)
{
	enum sg_class cls = SG_CLASS_PASS;
	int rc;

	if (msg->limit_error) {
		sg_result_reply(res, SG_VERDICT_REJECT, "552", "5.3.4",
		    "message refused: %s", msg->limit_what);
		sg_result_reason(res, "%s", msg->limit_what);
		return SG_OK;
	}
	if ((long long)sg_spool_size(msg->spool) > pol->gateway.max_message_size) {
		sg_result_reply(res, SG_VERDICT_REJECT, "552", "5.3.4",
		    "message size exceeds the limit of %lld bytes",
		    pol->gateway.max_message_size);
		sg_result_reason(res, "message too large");
		return SG_OK;
	}
	if (msg->rcpts->len == 0)
		return SG_OK;
	rc = transaction_class(msg, pol, ks, res, &cls);
	if (rc < 0 || res->verdict != SG_VERDICT_ACCEPT)
		return rc;
	switch (cls) {
	case SG_CLASS_PASS:
	case SG_CLASS_INTERNAL:
		if (all_internal(msg, pol))
			return sg_inbound_run(msg, pol, ks, res);
		sg_result_reason(res, "not outbound");
		return SG_OK;
	default:
		return run_outbound(msg, pol, ks, cls, res);
	}
}
