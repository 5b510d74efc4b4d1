/* The one pipeline behind both front ends (milter and `sealgate process`):
 * given a message and a policy snapshot, decide and compute the edits. */
#ifndef SEALGATE_PIPELINE_H
#define SEALGATE_PIPELINE_H

#include <glib.h>

#include "sealgate/edits.h"
#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/policy.h"
#include "sealgate/progress.h"

enum sg_verdict {
	SG_VERDICT_ACCEPT = 0,
	SG_VERDICT_REJECT,
	SG_VERDICT_TEMPFAIL,
	SG_VERDICT_QUARANTINE,
};

struct sg_result {
	enum sg_verdict verdict;
	char rcode[4];          /* SMTP reply for reject/tempfail, e.g. "550" */
	char xcode[16];         /* enhanced status code, e.g. "5.7.1" */
	char *text;             /* reply text */
	const char *action;     /* what was done: "pass", "encrypt", ... */
	const char *method;     /* "openpgp" or NULL */
	const char *rule;       /* the deciding rule (policy's storage) */
	const char *direction;  /* "outbound", "internal" (a trusted sender to
				 * internal recipients only), "inbound",
				 * "other" (neither: passed on), "unknown" */
	const char *cause;      /* reject/tempfail: why, in a fixed word
				 * (metrics label) */
	const char *decryption; /* inbound: "yes", "no", "failed"; else NULL */
	const char *decryption_reason; /* ... its reason word, or NULL */
	const char *signature;  /* inbound, verified: sg_sig_status_name */
	char *reason;           /* why, for the log (never message content) */
	GPtrArray *fprs;        /* char *: keys used */
	const char *cipher;     /* S/MIME encryption: the content encryption */
	char *cipher_why;       /* ... and why */
	char *caps_recorded;    /* inbound: "FPR: ciphers" of S/MIME
				 * capabilities recorded from a signature */
	char *caps_error;       /* ... or why they could not be */
	struct sg_edits edits;
};

void sg_result_init(struct sg_result *res);
void sg_result_clear(struct sg_result *res);
const char *sg_verdict_name(enum sg_verdict v);

/* Sets a reject/tempfail verdict with its SMTP reply; cause is a fixed
 * word (a static string) saying why, for the metrics. */
void sg_result_reply(struct sg_result *res, enum sg_verdict v,
		     const char *cause, const char *rcode, const char *xcode,
		     const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* True when the transaction is outbound: the envelope sender's domain is
 * internal and the client is trusted (SMTP AUTH, or an address in
 * gateway.trusted_networks). */
bool sg_pipeline_outbound(const struct sg_policy *pol, const struct sg_msg *msg);

/* Why the transaction is or is not outbound. (transfer full) */
char *sg_pipeline_direction(const struct sg_policy *pol,
			    const struct sg_msg *msg);

/* The class of one recipient of msg as far as the envelope tells (RCPT
 * time). For SG_CLASS_OPENPGP, key_fpr (SG_FPR_MAX bytes, may be NULL)
 * receives the key's fingerprint. When why is not NULL it receives a short
 * explanation (transfer full). */
int sg_pipeline_classify(const struct sg_policy *pol,
			 const struct sg_keystore *ks, const struct sg_msg *msg,
			 const char *rcpt, enum sg_class *out, char *key_fpr,
			 char **why);

const char *sg_class_name(enum sg_class cls);

/* The method (enum sg_method) of an encrypting class, -1 for the others. */
int sg_class_method(enum sg_class cls);

/* True when the class's method is among methods. */
bool sg_class_has_key(enum sg_class cls, const struct sg_methods *methods);

/* Initialises GMime, OpenSSL (its default provider, and the legacy one
 * when it is there) and GPGME for the pipeline: once per process, before
 * any thread. */
int sg_pipeline_init(struct sg_err *err);

/* Runs the message through the policy. Always leaves a verdict in res; a
 * negative return means an internal error, and res then says tempfail.
 * progress (may be NULL) is told of the work during encryption, signing
 * and decryption. */
int sg_pipeline_run(struct sg_msg *msg, const struct sg_policy *pol,
		    const struct sg_keystore *ks, struct sg_progress *progress,
		    struct sg_result *res);

#endif
