/* Shared by the pipeline's files (pipeline.c, protect.c). */
#ifndef SEALGATE_PIPELINE_INT_H
#define SEALGATE_PIPELINE_INT_H

#include "sealgate/error.h"
#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/pipeline.h"
#include "sealgate/plan.h"

/* Sets the reason for the log (never message content). */
void sg_result_reason(struct sg_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Internal error: tempfail, so the MTA keeps the mail (DESIGN.md §4
 * rule 2). Returns a negative code. */
int sg_result_internal(struct sg_result *res, int rc, const char *what,
		       const struct sg_err *err);

/* Builds the protected body the plan asks for (sign, encrypt or both) and
 * the header edits that go with it. */
int sg_protect(struct sg_msg *msg, const struct sg_policy *pol,
	       const struct sg_keystore *ks, const struct sg_plan *plan,
	       struct sg_result *res);

#endif
