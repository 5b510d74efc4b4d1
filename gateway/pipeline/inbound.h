/* Inbound processing (gateway/inbound.c). */
#ifndef SEALGATE_INBOUND_H
#define SEALGATE_INBOUND_H

#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/pipeline.h"
#include "sealgate/policy.h"
#include "sealgate/progress.h"

/* For a transaction whose recipients are all internal: removes forged
 * status headers, decrypts when the policy and the keys allow, and adds
 * X-Sealgate-Decrypted and X-Sealgate-Signature. progress (may be NULL)
 * is told of the plaintext as it is decrypted. */
int sg_inbound_run(struct sg_msg *msg, const struct sg_policy *pol,
		   const struct sg_keystore *ks, struct sg_progress *progress,
		   struct sg_result *res);

#include <glib.h>
#include <gmime/gmime.h>

#include "sealgate/mime.h"
#include "sealgate/spool.h"
#include "sealgate/verify.h"

/* What X-Sealgate-Decrypted says: status, reason, integrity (and the
 * method, an SG_METHOD_* or SG_NO_METHOD). inbound.c turns them into
 * the words of the header and the log line, in one place. */
enum sg_dec_status { SG_DEC_NO, SG_DEC_YES, SG_DEC_FAILED };

enum sg_dec_reason {
	SG_DEC_NO_REASON = 0,
	SG_DEC_NOT_ENCRYPTED,
	SG_DEC_NOT_FOR_RECIPIENT,
	SG_DEC_PARTIAL_ENCRYPTION,
	SG_DEC_MALFORMED,
	SG_DEC_DISABLED,
	SG_DEC_DEACTIVATED,
	SG_DEC_TOO_MANY_RECIPIENTS,
	SG_DEC_UNSUPPORTED,
	SG_DEC_INTEGRITY,
	SG_DEC_TOO_LARGE,
	SG_DEC_CIPHER_NOT_ALLOWED,
	SG_DEC_NO_INTEGRITY,
	SG_DEC_DECRYPTION_ERROR,
	SG_DEC_TOO_DEEP,
};

enum sg_dec_integrity {
	SG_INTEGRITY_NONE,
	SG_INTEGRITY_MDC,
	SG_INTEGRITY_AEAD,
	SG_INTEGRITY_SIGNATURE,     /* CBC under a signature that covers it */
};

#define SG_NO_METHOD (-1)

#define SG_VERIFY_MAX (100 * 1024 * 1024)

/* What the message claims about its signer, checked against a valid
 * signature: the From mailbox (and its display name), the Date. */
struct sg_claims {
	const char *from;               /* From field value, or NULL */
	const char *date;               /* first Date field value, or NULL */
	unsigned dates;                 /* number of Date fields */
	long long date_tolerance;       /* seconds */
};

/* The claims of msg under pol's inbound.signature_date_tolerance. */
void sg_inbound_claims(const struct sg_msg *msg, const struct sg_policy *pol,
		       struct sg_claims *out);

/* A valid signature by someone other than the From address becomes
 * signer-mismatch (reason "signer is not the From address"), one whose
 * From display name shows another address signer-mismatch
 * (reason=display-name), one made too far from the Date invalid
 * (reason=date-mismatch, no-date, bad-date or no-signing-time). */
void sg_inbound_check_signer(const struct sg_claims *claims,
			     struct sg_sig *sig);

/* An entity to verify or deliver: obj is the entity as parsed (its
 * Content-Type and Content-Transfer-Encoding count, nothing else of it),
 * body its body exactly as it arrived, read from a spool. */
struct sg_entity {
	GMimeObject *obj;
	GMimeStream *body;
};

/* Where the two parts of a multipart/signed body lie, in bytes from the
 * start of the body. */
struct sg_signed_parts {
	gint64 p1, l1;          /* the signed part */
	gint64 p2, l2;          /* the signature part */
};

/* Splits the body of a multipart/signed entity with boundary into its two
 * parts, exactly as they were signed, reading it once in a few kilobytes
 * of memory: p1 and l1 the first part without the line break before the
 * next delimiter (it belongs to the delimiter), p2 and l2 the second part
 * up to the close delimiter. A delimiter line is "--" boundary at a line
 * start, then "--" for the close delimiter, then only blanks and tabs. The
 * preamble before the first delimiter and the epilogue after the close
 * delimiter are skipped. False unless there are exactly two parts and a
 * close delimiter, before any line that goes on after a CR (readers
 * disagree whether that CR ends the line). */
bool sg_split_signed(GMimeStream *body, const char *boundary,
		     struct sg_signed_parts *out);

/* Verifies the signature of an entity that is multipart/signed or opaque
 * S/MIME signed-data, reading the signed bytes from the spool, and checks
 * it against the claims (sg_inbound_check_signer). method is
 * SG_METHOD_OPENPGP, SG_METHOD_SMIME or SG_NO_METHOD (not signed). For
 * opaque signed-data whose signature holds, *unwrapped (when unwrapped is
 * not NULL) receives a spool in spool_dir with the signed entity (CRLF).
 * Negative (the status then says nothing) when a spool fails.
 * (transfer full: *unwrapped) */
int sg_inbound_verify(const struct sg_keystore *ks, const struct sg_entity *e,
		      const struct sg_claims *claims, const char *spool_dir,
		      struct sg_sig *sig, int *method,
		      struct sg_spool **unwrapped);

/* Records the S/MIME capabilities that sig announced (sealgate/
 * smimecaps.h) when it is a valid S/MIME signature (method
 * SG_METHOD_SMIME) that carries them. What was recorded, or why it could
 * not be, goes to res for the log; delivery does not depend on it. */
void sg_inbound_record_caps(const struct sg_keystore *ks,
			    const struct sg_sig *sig, int method,
			    struct sg_result *res);

/* What a valid S/MIME signature of e (multipart/signed or opaque
 * signed-data at its top) covers of its body, as sealgate delivers it,
 * appended to out: for multipart/signed the signed part as it was signed
 * and a signature part made anew from the signature alone, without
 * preamble and epilogue that no signature covers; for opaque signed-data
 * its DER in base64 (*base64 set). *covered false when e is neither (out
 * is then to be discarded). Negative when a spool fails. */
int sg_inbound_signed_body(const struct sg_entity *e, const char *spool_dir,
			   struct sg_spool *out, bool *covered, bool *base64);

/* The plaintext, counted as it is decrypted against its bound and kept
 * in canonical form (CRLF) in a secret spool; without a spool only
 * counted. */
struct plain {
	struct sg_spool *spool;
	size_t n;
	size_t max;
	bool overflow;
	bool io_error;
	struct sg_progress *progress;   /* told of what is written */
};

/* What was decrypted and verified, and how it went. */
struct decryption {
	int method;             /* SG_METHOD_*, SG_NO_METHOD */
	enum sg_dec_integrity integrity;
	enum sg_dec_status status;
	enum sg_dec_reason reason;
	struct plain plain;     /* the decrypted (or unwrapped) entity */
	char *header;           /* its header block, once checked */
	gint64 body_off;        /* where its body starts */
	bool inline_text;       /* inline PGP: the plaintext is the text */
	struct sg_sig sig;
	int sig_method;         /* SG_METHOD_*, SG_NO_METHOD: not signed */
	struct sg_spool *signed_body; /* integrity=signature: what is delivered */
	bool signed_base64;      /* ... in base64 (opaque signed-data) */
};

/* Sets how a decryption went. */
void sg_decryption_outcome(struct decryption *d, enum sg_dec_status status,
			   enum sg_dec_reason reason);

/* Decrypts a whole-message encryption of top into d->plain; d says how it
 * went. A transient failure (described in err) is returned instead: the
 * MTA then keeps the mail. */
int sg_inbound_decrypt(const struct sg_msg *msg, const struct sg_policy *pol,
		       const struct sg_keystore *ks, GMimeObject *top,
		       enum sg_protection prot, struct decryption *d,
		       struct sg_err *err);

/* Wipes and frees a string that held decrypted text (NULL is fine). */
void sg_inbound_free_secret(char *s);

#endif
