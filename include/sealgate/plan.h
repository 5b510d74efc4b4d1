/* From decisions to a plan: what each recipient of an outbound
 * transaction gets (plain, signed, encrypted, both, or a refusal), and the
 * one body that serves them all. */
#ifndef SEALGATE_PLAN_H
#define SEALGATE_PLAN_H

#include <stdbool.h>

#include <glib.h>

#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/openpgp.h"
#include "sealgate/policy.h"
#include "sealgate/rules.h"

/* The sender's signing keys, per method (enum sg_method). */
struct sg_signers {
	bool looked_up;
	bool denied;            /* the client may not sign as the sender */
	bool have[SG_MAX_METHODS];
	char fpr[SG_MAX_METHODS][SG_FPR_MAX];
	char why[SG_MAX_METHODS][160];
};

/* Looks the signing keys of msg's sender up once: none when the client
 * may not sign as that address (sg_policy_may_sign; denied is set and why
 * says why) or the identity is deactivated. Negative on internal errors. */
int sg_signers_lookup(struct sg_signers *s, const struct sg_policy *pol,
		      const struct sg_keystore *ks, const struct sg_msg *msg);

enum sg_outcome {
	SG_OUTCOME_PASS,        /* not outbound, or internal */
	SG_OUTCOME_PLAIN,
	SG_OUTCOME_SIGN,
	SG_OUTCOME_ENCRYPT,
	SG_OUTCOME_SIGN_ENCRYPT,
	SG_OUTCOME_REJECT,      /* mandatory, a key missing, on_missing_key reject */
	SG_OUTCOME_TEMPFAIL,    /* same, on_missing_key tempfail */
};

const char *sg_outcome_name(enum sg_outcome o);

struct sg_rcpt_plan {
	enum sg_outcome outcome;
	int encrypt_method;     /* enum sg_method or -1 */
	int sign_method;        /* enum sg_method or -1 */
	const char *missing;    /* for a refusal: "key" or "signing key" */
};

/* What decision d means for one recipient of class cls. signers must have
 * been looked up when d's action signs. */
void sg_plan_recipient(const struct sg_decision *d, enum sg_class cls,
		       const struct sg_signers *signers, struct sg_rcpt_plan *out);

/* An S/MIME recipient as the choice of the content encryption sees it. */
struct sg_cipher_rcpt {
	const char *addr;
	const char *fpr;        /* its certificate */
	int forced;             /* smime_cipher of its decision, -1: not set */
	const char *forced_by;  /* rule name, or NULL for outbound.default */
	unsigned caps;          /* SG_SMIME_CAP bits it is known to read;
				 * 0: unknown */
};

/* Fills the caps of r[0..n-1] from the keystore's capability files
 * (sealgate/smimecaps.h); one that cannot be read stays unknown. */
void sg_cipher_caps(const struct sg_keystore *ks, struct sg_cipher_rcpt *r,
		    size_t n);

/*
 * The S/MIME content encryption (enum sg_smime_cipher) for recipients
 * r[0..n-1], n > 0, and why (len bytes): the most compatible of what their
 * decisions force and of the strongest cipher that every other recipient
 * is known to read. A recipient whose capabilities are unknown reads
 * AES-256-CBC and AES-128-CBC, which every S/MIME client does; when the
 * others have nothing in common, AES-256-CBC.
 */
int sg_cipher_choose(const struct sg_cipher_rcpt *r, size_t n, char *why,
		     size_t len);

/* The plan of a whole transaction. */
struct sg_plan {
	bool sign, encrypt;
	int sign_method, encrypt_method;
	const char *signer_fpr;     /* in signers */
	int cipher;                 /* S/MIME: sg_plan_cipher's choice */
	char cipher_why[200];
	GArray *cipher_rcpts;       /* struct sg_cipher_rcpt, S/MIME encrypted */
	GArray *oaep;               /* gboolean per recipient */
	bool conflict;              /* recipients need different bodies */
	unsigned n_plain_keyless;   /* plain recipients that have no key */
	GString *missing[3];        /* by on_missing_key: addresses */
	const char *missing_rule[3];
	const char *missing_what[3];
	const char *rule;           /* a deciding rule, for the log */
	const char *strip_tag;      /* tag to remove from the Subject */
	const char *sender;         /* msg's canonical sender */
	struct sg_signers signers;
};

/* An empty plan for sender (not copied). sg_plan_clear frees it. */
void sg_plan_init(struct sg_plan *plan, const char *sender);

/* The decisions of sg_plan_transaction, without looking anything up:
 * unites the plans of the recipients rcpts (struct sg_rcpt *), all of
 * class cls, recipient i under decision d[i], into plan, made by
 * sg_plan_init. plan->signers must have been looked up when a decision
 * signs. */
void sg_plan_unite(struct sg_plan *plan, const struct sg_decision *d,
		   const GPtrArray *rcpts, enum sg_class cls);

/* The content encryption of an S/MIME encrypting plan (sg_cipher_choose
 * over plan->cipher_rcpts with their capabilities from ks). */
void sg_plan_cipher(struct sg_plan *plan, const struct sg_keystore *ks);

/* Decides every recipient of msg (all of class cls), looks the sender's
 * signing keys up when a decision signs, unites them (sg_plan_unite) and
 * chooses the content encryption (sg_plan_cipher). */
int sg_plan_transaction(struct sg_plan *plan, const struct sg_msg *msg,
			const struct sg_policy *pol,
			const struct sg_keystore *ks, enum sg_class cls,
			const struct sg_facts *facts);
void sg_plan_clear(struct sg_plan *plan);

#endif
