/* Direction of a transaction and class of each recipient: what the
 * envelope and the keystore snapshot tell, without starting a process. */
#include <string.h>

#include "pipeline_int.h"
#include "sealgate/openpgp.h"
#include "sealgate/smime.h"

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

int
sg_classify_transaction(struct sg_msg *msg, const struct sg_policy *pol,
		  const struct sg_keystore *ks, struct sg_result *res,
		  enum sg_class *out)
{
	enum sg_class first = SG_CLASS_NONE;
	char fpr[SG_FPR_MAX];
	GString *others = NULL; /* every recipient of another class */
	unsigned n_others = 0;
	int rc;

	for (guint i = 0; i < msg->rcpts->len; i++) {
		struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		if (r->cls == SG_CLASS_NONE) {
			rc = sg_pipeline_classify(pol, ks, msg, r->addr, &r->cls,
			    fpr, NULL);
			if (rc < 0) {
				if (others != NULL)
					g_string_free(others, TRUE);
				return sg_result_internal(res, rc, "key lookup", NULL);
			}
			if (sg_class_method(r->cls) >= 0)
				r->key_fpr = g_strdup(fpr);
		}
		if (first == SG_CLASS_NONE)
			first = r->cls;
		if (r->cls != first) {
			/* The milter never gets here (it answers 452 at RCPT
			 * time); `sealgate process` names each of them. */
			if (others == NULL)
				others = g_string_new(NULL);
			g_string_append_printf(others, "%s<%s> needs a different "
			    "treatment (%s, not %s)", others->len ? ", recipient "
			    : "", r->addr, sg_class_name(r->cls),
			    sg_class_name(first));
			n_others++;
			continue;
		}
		if (sg_class_method(r->cls) >= 0 && r->key_fpr == NULL) {
			if (others != NULL)
				g_string_free(others, TRUE);
			return sg_result_internal(res, SG_ENOKEY, "key lookup", NULL);
		}
	}
	if (others != NULL) {
		sg_result_reply(res, SG_VERDICT_TEMPFAIL, "mixed-classes", "452",
		    "4.5.3",
		    "recipient %s; deliver %s in a separate transaction",
		    others->str, n_others > 1 ? "each" : "it");
		sg_result_reason(res, "mixed recipient classes");
		g_string_free(others, TRUE);
		return SG_OK;
	}
	*out = first;
	return SG_OK;
}

