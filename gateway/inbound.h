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

/* A valid signature by someone other than the From address becomes
 * signer-mismatch. */
void sg_inbound_check_signer(const char *from, struct sg_sig *sig);

/* Verifies the signature of an entity (raw bytes: header block, empty
 * line, body) that is multipart/signed or opaque S/MIME signed-data, and
 * compares the signer with the From address. method is "openpgp",
 * "smime" or NULL (not signed). For opaque signed-data whose signature
 * holds, unwrapped receives the signed entity. */
void sg_inbound_verify(const struct sg_keystore *ks, const guint8 *entity,
		       size_t len, const char *from, struct sg_sig *sig,
		       const char **method, GByteArray **unwrapped);

/* What a valid signature of entity (multipart/signed or opaque S/MIME
 * signed-data at its top) covers of its body: for multipart/signed the
 * two parts between their delimiters, without the preamble and epilogue
 * that no signature covers. False when entity is neither. (transfer full:
 * *body) */
bool sg_inbound_signed_body(const guint8 *entity, size_t len,
			    GByteArray **body);

#endif
