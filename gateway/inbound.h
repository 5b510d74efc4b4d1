/* Inbound processing (gateway/inbound.c). */
#ifndef SEALGATE_INBOUND_H
#define SEALGATE_INBOUND_H

#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/pipeline.h"
#include "sealgate/policy.h"

/* For a transaction whose recipients are all internal: removes forged
 * status headers, decrypts when the policy and the keys allow, and adds
 * X-Sealgate-Decrypted and X-Sealgate-Signature. */
int sg_inbound_run(struct sg_msg *msg, const struct sg_policy *pol,
		   const struct sg_keystore *ks, struct sg_result *res);

#include <glib.h>

#include "sealgate/verify.h"

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

/* Verifies the signature of an entity (raw bytes: header block, empty
 * line, body) that is multipart/signed or opaque S/MIME signed-data, and
 * checks it against the claims (sg_inbound_check_signer). method is
 * "openpgp", "smime" or NULL (not signed). For opaque signed-data whose
 * signature holds, unwrapped receives the signed entity. */
void sg_inbound_verify(const struct sg_keystore *ks, const guint8 *entity,
		       size_t len, const struct sg_claims *claims,
		       struct sg_sig *sig, const char **method,
		       GByteArray **unwrapped);

/* What a valid S/MIME signature of entity (multipart/signed or opaque
 * signed-data at its top) covers of its body, as sealgate delivers it:
 * for multipart/signed the signed part as it was signed and a signature
 * part made anew from the signature alone, without preamble and epilogue
 * that no signature covers; for opaque signed-data its DER in base64
 * (*base64 set). False when entity is neither. (transfer full: *body) */
bool sg_inbound_signed_body(const guint8 *entity, size_t len,
			    GByteArray **body, bool *base64);

#endif
