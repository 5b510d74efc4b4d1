/* Shared by the pipeline's files: result.c, classify.c, plan.c,
 * protect.c, inbound*.c, pipeline.c. */
#ifndef SEALGATE_PIPELINE_INT_H
#define SEALGATE_PIPELINE_INT_H

#include "sealgate/error.h"
#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/pipeline.h"
#include "sealgate/plan.h"
#include "sealgate/progress.h"

/* Sets the reason for the log (never message content). */
void sg_result_reason(struct sg_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Internal error: tempfail, so the MTA keeps the mail (DESIGN.md §4
 * rule 2). Returns a negative code. */
int sg_result_internal(struct sg_result *res, int rc, const char *what,
		       const struct sg_err *err);

/* A key lookup of one method (sg_openpgp_find_key, sg_smime_find_cert):
 * 0 and the key's fingerprint in fpr (SG_FPR_MAX bytes), SG_ENOKEY (err
 * says why) or another negative code. */
typedef int sg_find_key_fn(const struct sg_keystore *ks, const char *addr,
			   char *fpr, struct sg_err *err);

/* The class of an external recipient of outbound mail: that of the first
 * of methods for which find[method] finds a usable key, else
 * SG_CLASS_PLAIN; key_fpr and why as for sg_pipeline_classify. */
int sg_classify_external(const struct sg_keystore *ks, const char *rcpt,
			 const struct sg_methods *methods,
			 sg_find_key_fn *const find[SG_MAX_METHODS],
			 enum sg_class *out, char *key_fpr, char **why);

/* The class of the transaction in out. Recipients classified at RCPT
 * time keep that class (and key); the others are classified now. All
 * must agree: when one does not, res holds tempfail 452 4.5.3 naming it
 * (the MTA delivers it in a separate transaction) and out is untouched.
 * Negative on internal errors (res then says tempfail). */
int sg_classify_transaction(struct sg_msg *msg, const struct sg_policy *pol,
			    const struct sg_keystore *ks,
			    struct sg_result *res, enum sg_class *out);

/* The deciding rule's name for replies and the log: rule, or
 * "outbound.default" for the policy's default (NULL). */
const char *sg_plan_rule_label(const char *rule);

/* Sets in res the refusal plan calls for, and returns true; false when
 * it calls for none. Recipients without a usable key under
 * on_missing_key reject: 550 5.7.1 naming the rule and every one of them
 * (before those under tempfail: 451 4.7.1); recipients that need
 * different bodies (plan->conflict): 550 5.7.1. */
bool sg_plan_refusal(const struct sg_plan *plan, struct sg_result *res);

/* Builds the protected body the plan asks for (sign, encrypt or both) and
 * the header edits that go with it, reporting progress (may be NULL). */
int sg_protect(struct sg_msg *msg, const struct sg_policy *pol,
	       const struct sg_keystore *ks, const struct sg_plan *plan,
	       struct sg_progress *progress, struct sg_result *res);

#endif
