/* Per-recipient plans and the transaction plan; see
 * include/sealgate/plan.h. */
#include <string.h>

#include "pipeline_int.h"
#include "sealgate/smime.h"

static void
no_signer(struct sg_signers *s, const char *why)
{
	for (int m = 0; m < SG_MAX_METHODS; m++)
		g_strlcpy(s->why[m], why, sizeof(s->why[m]));
}

int
sg_signers_lookup(struct sg_signers *s, const struct sg_policy *pol,
		  const struct sg_keystore *ks, const struct sg_msg *msg)
{
	const char *sender = msg->mail_from;
	struct sg_err err = { 0 };
	char why[sizeof(s->why[0])];
	int rc;

	if (s->looked_up)
		return SG_OK;
	s->looked_up = true;
	/* Only for the authenticated owner of the address (DESIGN.md §4
	 * rule 8); the keys are not even looked at otherwise. */
	if (!sg_policy_may_sign(pol, sender, msg->auth_user, msg->client_ip,
	    why, sizeof(why))) {
		s->denied = true;
		no_signer(s, why);
		return SG_OK;
	}
	/* A deactivated identity (someone who left) signs nothing. */
	if (sg_keystore_deactivated(ks, sender)) {
		no_signer(s, "identity deactivated");
		return SG_OK;
	}
	for (int m = 0; m < SG_MAX_METHODS; m++) {
		err.msg[0] = '\0';
		rc = m == SG_METHOD_OPENPGP
		    ? sg_openpgp_find_signing_key(ks, sender, s->fpr[m], &err)
		    : sg_smime_find_signing_cert(ks, sender, s->fpr[m], &err);
		if (rc < 0 && rc != SG_ENOKEY)
			return rc;
		s->have[m] = rc == 0;
		g_strlcpy(s->why[m], err.msg, sizeof(s->why[m]));
	}
	return SG_OK;
}

const char *
sg_outcome_name(enum sg_outcome o)
{
	switch (o) {
	case SG_OUTCOME_PASS:		return "pass";
	case SG_OUTCOME_PLAIN:		return "plain";
	case SG_OUTCOME_SIGN:		return "sign";
	case SG_OUTCOME_ENCRYPT:	return "encrypt";
	case SG_OUTCOME_SIGN_ENCRYPT:	return "sign-encrypt";
	case SG_OUTCOME_REJECT:		return "reject";
	default:			return "tempfail";
	}
}

static bool
action_signs(int action)
{
	return action == SG_ACTION_SIGN || action == SG_ACTION_SIGN_ENCRYPT;
}

/* The signing method for a sign-only decision: the class's own method
 * when the sender can sign with it, else the first in the list. */
static int
sign_method(const struct sg_decision *d, enum sg_class cls,
	    const struct sg_signers *s)
{
	int own = sg_class_method(cls);

	if (own >= 0 && sg_policy_allows_method(d->methods, own) && s->have[own])
		return own;
	for (unsigned i = 0; i < d->methods->n; i++)
		if (s->have[d->methods->v[i]])
			return d->methods->v[i];
	return -1;
}

static void
missing(const struct sg_decision *d, const char *what, struct sg_rcpt_plan *out)
{
	out->missing = what;
	switch (d->on_missing_key) {
	case SG_MISSING_SEND_PLAIN:
		out->outcome = SG_OUTCOME_PLAIN;
		break;
	case SG_MISSING_TEMPFAIL:
		out->outcome = SG_OUTCOME_TEMPFAIL;
		break;
	default:
		out->outcome = SG_OUTCOME_REJECT;
		break;
	}
}

void
sg_plan_recipient(const struct sg_decision *d, enum sg_class cls,
		  const struct sg_signers *s, struct sg_rcpt_plan *out)
{
	bool has_key = sg_class_has_key(cls, d->methods);
	int own = sg_class_method(cls);

	memset(out, 0, sizeof(*out));
	out->encrypt_method = out->sign_method = -1;
	switch (d->action) {
	case SG_ACTION_NONE:
		out->outcome = SG_OUTCOME_PLAIN;
		return;
	case SG_ACTION_ENCRYPT_IF_KEY:
	case SG_ACTION_ENCRYPT:
		if (has_key) {
			out->outcome = SG_OUTCOME_ENCRYPT;
			out->encrypt_method = own;
		} else if (d->action == SG_ACTION_ENCRYPT) {
			missing(d, "key", out);
		} else {
			out->outcome = SG_OUTCOME_PLAIN;
		}
		return;
	case SG_ACTION_SIGN:
		out->sign_method = sign_method(d, cls, s);
		if (out->sign_method >= 0)
			out->outcome = SG_OUTCOME_SIGN;
		else
			missing(d, "signing key", out);
		return;
	default: /* sign-encrypt: both with the recipient's method */
		if (has_key && s->have[own]) {
			out->outcome = SG_OUTCOME_SIGN_ENCRYPT;
			out->encrypt_method = out->sign_method = own;
			return;
		}
		missing(d, has_key ? "signing key" : "key", out);
		if (out->outcome != SG_OUTCOME_PLAIN)
			return;
		/* send-plain: drop only what cannot be done. */
		if (has_key) {
			out->outcome = SG_OUTCOME_ENCRYPT;
			out->encrypt_method = own;
		} else if ((out->sign_method = sign_method(d, cls, s)) >= 0) {
			out->outcome = SG_OUTCOME_SIGN;
		}
		return;
	}
}

static void
add_missing(struct sg_plan *plan, const struct sg_decision *d,
	    const struct sg_rcpt_plan *rp, const char *addr)
{
	int m = d->on_missing_key;

	if (plan->missing[m] == NULL) {
		plan->missing[m] = g_string_new(NULL);
		plan->missing_rule[m] = d->rule;
		plan->missing_what[m] = rp->missing;
	}
	g_string_append_printf(plan->missing[m], "%s%s",
	    plan->missing[m]->len ? ", " : "", addr);
}

/* Unites one recipient's plan with the transaction's: the body must sign
 * if anyone needs a signature and encrypt if anyone needs encryption. */
static void
unite(struct sg_plan *plan, const struct sg_rcpt_plan *rp, bool has_key)
{
	if (rp->sign_method >= 0) {
		if (plan->sign && plan->sign_method != rp->sign_method)
			plan->conflict = true;
		plan->sign = true;
		plan->sign_method = rp->sign_method;
	}
	if (rp->encrypt_method >= 0) {
		plan->encrypt = true;
		plan->encrypt_method = rp->encrypt_method;
	} else if (!has_key) {
		plan->n_plain_keyless++;
	}
}

void
sg_plan_init(struct sg_plan *plan, const char *sender)
{
	memset(plan, 0, sizeof(*plan));
	plan->sign_method = plan->encrypt_method = -1;
	plan->cipher = SG_SMIME_AES256_CBC;     /* until sg_plan_cipher */
	plan->sender = sender;
	plan->oaep = g_array_new(FALSE, TRUE, sizeof(gboolean));
	plan->cipher_rcpts = g_array_new(FALSE, TRUE,
	    sizeof(struct sg_cipher_rcpt));
}

void
sg_plan_unite(struct sg_plan *plan, const struct sg_decision *d,
	      const GPtrArray *rcpts, enum sg_class cls)
{
	for (guint i = 0; i < rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(rcpts, i);
		gboolean oaep = d[i].smime_key_transport == SG_KT_RSA_OAEP;
		struct sg_rcpt_plan rp;

		sg_plan_recipient(&d[i], cls, &plan->signers, &rp);
		g_array_append_val(plan->oaep, oaep);
		if (rp.encrypt_method == SG_METHOD_SMIME) {
			struct sg_cipher_rcpt c = { r->addr, r->key_fpr,
			    d[i].smime_cipher, d[i].smime_cipher_rule ?
			    d[i].rule : NULL, 0 };

			g_array_append_val(plan->cipher_rcpts, c);
		}
		if (d[i].rule != NULL && plan->rule == NULL)
			plan->rule = d[i].rule;
		if (d[i].strip_tag && plan->strip_tag == NULL)
			plan->strip_tag = d[i].subject_tag;
		if (rp.outcome == SG_OUTCOME_REJECT ||
		    rp.outcome == SG_OUTCOME_TEMPFAIL)
			add_missing(plan, &d[i], &rp, r->addr);
		else
			unite(plan, &rp, sg_class_has_key(cls, d[i].methods));
	}
	/* Signing and encryption together use the encryption's method. */
	if (plan->sign && plan->encrypt &&
	    plan->sign_method != plan->encrypt_method) {
		if (plan->signers.have[plan->encrypt_method])
			plan->sign_method = plan->encrypt_method;
		else
			plan->conflict = true;
	}
	if (plan->encrypt && plan->n_plain_keyless > 0)
		plan->conflict = true;
	if (plan->sign && plan->sign_method >= 0)
		plan->signer_fpr = plan->signers.fpr[plan->sign_method];
}

int
sg_plan_transaction(struct sg_plan *plan, const struct sg_msg *msg,
		    const struct sg_policy *pol, const struct sg_keystore *ks,
		    enum sg_class cls, const struct sg_facts *facts)
{
	struct sg_decision *d = g_new0(struct sg_decision, msg->rcpts->len);
	int rc = SG_OK;

	sg_plan_init(plan, msg->mail_from);
	for (guint i = 0; i < msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		sg_policy_decide(pol, facts, r->addr, &d[i]);
		if (action_signs(d[i].action))
			rc = sg_signers_lookup(&plan->signers, pol, ks, msg);
		if (rc < 0)
			goto out;
	}
	sg_plan_unite(plan, d, msg->rcpts, cls);
	if (plan->encrypt && plan->encrypt_method == SG_METHOD_SMIME)
		sg_plan_cipher(plan, ks);
out:
	g_free(d);
	return rc;
}

void
sg_plan_clear(struct sg_plan *plan)
{
	if (plan->oaep != NULL)
		g_array_free(plan->oaep, TRUE);
	if (plan->cipher_rcpts != NULL)
		g_array_free(plan->cipher_rcpts, TRUE);
	for (int i = 0; i < 3; i++)
		if (plan->missing[i] != NULL)
			g_string_free(plan->missing[i], TRUE);
	memset(plan, 0, sizeof(*plan));
}
const char *
sg_plan_rule_label(const char *rule)
{
	return rule != NULL ? rule : "outbound.default";
}

static bool
refuse_one(const struct sg_plan *plan, int m, struct sg_result *res)
{
	const char *what = plan->missing_what[m];
	bool sign = what != NULL && strcmp(what, "signing key") == 0;
	const char *rule = sg_plan_rule_label(plan->missing_rule[m]);

	char *denied;

	if (plan->missing[m] == NULL)
		return false;
	/* A client that may not sign as the sender is told so, naming it. */
	denied = sign && plan->signers.denied ?
	    g_strdup_printf(" (sender <%s> may not sign: %s)",
	    plan->sender, plan->signers.why[0]) : g_strdup("");
	if (m == SG_MISSING_REJECT)
		sg_result_reply(res, SG_VERDICT_REJECT, "missing-key", "550",
		    "5.7.1",
		    "%s required by rule \"%s\"; no usable %s for: %s%s",
		    sign ? "signing" : "encryption", rule, what,
		    plan->missing[m]->str, denied);
	else
		sg_result_reply(res, SG_VERDICT_TEMPFAIL, "missing-key", "451",
		    "4.7.1",
		    "%s required by rule \"%s\"; no usable %s for: %s%s; "
		    "try again later", sign ? "signing" : "encryption", rule, what,
		    plan->missing[m]->str, denied);
	sg_result_reason(res, "no usable %s (rule %s)%s", what, rule, denied);
	res->rule = plan->missing_rule[m];
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
		sg_result_reply(res, SG_VERDICT_REJECT, "conflict", "550",
		    "5.7.1", "the policy asks for different protection for the "
		    "recipients of this message; send to them separately");
		sg_result_reason(res, "conflicting outcomes in one transaction");
		return true;
	}
	return false;
}

