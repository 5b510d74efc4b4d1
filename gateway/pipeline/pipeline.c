/* The pipeline's entry point: direction and class (classify.c), plan
 * (plan.c), then protection (protect.c) outbound or decryption and
 * verification (inbound*.c) inbound; the result as edits (result.c).
 * Knows nothing of libmilter or syslog. */
#include <string.h>

#include <gmime/gmime.h>

#include "inbound.h"
#include "pipeline_int.h"
#include "sealgate/mime.h"
#include "sealgate/rewrite.h"
#include "sealgate/rules.h"

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

/* Parses the message; a refusal in res when it is malformed. *prot says
 * how it is already encrypted as a whole, judged from its content: a
 * label alone never lets a message pass. */
static int
inspect_message(struct sg_msg *msg, struct sg_result *res,
		enum sg_protection *prot)
{
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	GMimeMessage *parsed = NULL;
	GMimeStream *stream;
	int rc;

	stream = sg_spool_stream(msg->spool, 0, -1);
	if (stream == NULL)
		return sg_result_internal(res, SG_EIO, "spool", NULL);
	rc = sg_mime_inspect(stream, &info, &parsed, &err);
	g_object_unref(stream);
	if (rc == SG_EMALFORMED || rc == SG_ELIMIT) {
		sg_result_reply(res, SG_VERDICT_REJECT, "malformed", "554",
		    "5.6.0", "malformed MIME message (%s); it was not sent", err.msg);
		sg_result_reason(res, "malformed: %s", err.msg);
		return SG_OK;
	}
	if (rc < 0)
		return sg_result_internal(res, rc, "MIME parser", &err);
	*prot = sg_mime_encrypted_as(g_mime_message_get_mime_part(parsed));
	g_object_unref(parsed);
	return SG_OK;
}

/* An outbound transaction of one class: apply the rules, then protect or
 * pass, or refuse. */
static int
run_outbound(struct sg_msg *msg, const struct sg_policy *pol,
	     const struct sg_keystore *ks, enum sg_class cls,
	     struct sg_progress *progress, struct sg_result *res)
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
		    : "the policy asks for no protection", sg_plan_rule_label(plan.rule));
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
	rc = sg_protect(msg, pol, ks, &plan, progress, res);
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

/* The direction of the transaction, for the log and the metrics. */
static const char *
direction_of(const struct sg_msg *msg, const struct sg_policy *pol)
{
	bool internal;

	if (msg->rcpts->len == 0)
		return "unknown";
	internal = all_internal(msg, pol);
	if (sg_pipeline_outbound(pol, msg))
		return internal ? "internal" : "outbound";
	return internal ? "inbound" : "other";
}

int
sg_pipeline_run(struct sg_msg *msg, const struct sg_policy *pol,
		const struct sg_keystore *ks, struct sg_progress *progress,
		struct sg_result *res)
{
	enum sg_class cls = SG_CLASS_PASS;
	int rc;

	res->direction = direction_of(msg, pol);
	if (msg->limit_error) {
		sg_result_reply(res, SG_VERDICT_REJECT, "limit", "552", "5.3.4",
		    "message refused: %s", msg->limit_what);
		sg_result_reason(res, "%s", msg->limit_what);
		return SG_OK;
	}
	if ((long long)sg_spool_size(msg->spool) > pol->gateway.max_message_size) {
		sg_result_reply(res, SG_VERDICT_REJECT, "size", "552", "5.3.4",
		    "message size exceeds the limit of %lld bytes",
		    pol->gateway.max_message_size);
		sg_result_reason(res, "message too large");
		return SG_OK;
	}
	if (msg->rcpts->len == 0)
		return SG_OK;
	rc = sg_classify_transaction(msg, pol, ks, res, &cls);
	if (rc < 0 || res->verdict != SG_VERDICT_ACCEPT)
		return rc;
	switch (cls) {
	case SG_CLASS_PASS:
	case SG_CLASS_INTERNAL:
		if (all_internal(msg, pol))
			return sg_inbound_run(msg, pol, ks, progress, res);
		sg_result_reason(res, "not outbound");
		return SG_OK;
	default:
		return run_outbound(msg, pol, ks, cls, progress, res);
	}
}
