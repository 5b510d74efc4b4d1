/* Signature verification results, shared by the OpenPGP and S/MIME code. */
#ifndef SEALGATE_VERIFY_H
#define SEALGATE_VERIFY_H

#include <time.h>

#include <glib.h>

#include "sealgate/io.h"
#include "sealgate/openpgp.h"

enum sg_sig_status {
	SG_SIG_NONE = 0,
	SG_SIG_VALID,           /* good signature by a usable key (From not yet checked) */
	SG_SIG_INVALID,         /* the signature does not match the content */
	SG_SIG_EXPIRED,         /* key, certificate or signature expired */
	SG_SIG_REVOKED,
	SG_SIG_UNKNOWN_KEY,     /* key not in the keystore / no chain to an anchor */
	SG_SIG_SIGNER_MISMATCH, /* valid, but not by the From address */
};

struct sg_sig {
	enum sg_sig_status status;
	char fpr[SG_FPR_MAX];
	GPtrArray *addrs;       /* char *: the signer's addresses */
	time_t created;         /* creation time the signature claims (OpenPGP
				 * signature time, CMS signingTime); 0: none */
	bool has_smime_caps;    /* S/MIME: an SMIMECapabilities attribute was
				 * read (sg_smime_caps_announced) */
	unsigned smime_caps;    /* ... its ciphers, SG_SMIME_CAP bits */
	char reason[128];
};

void sg_sig_init(struct sg_sig *sig);
void sg_sig_clear(struct sg_sig *sig);
const char *sg_sig_status_name(enum sg_sig_status s);

/* OpenPGP detached signature sig over what data delivers, with keys from
 * the keystore. */
int sg_openpgp_verify(const struct sg_keystore *ks, struct sg_reader *data,
		      const void *sig, size_t sig_len, struct sg_sig *out,
		      struct sg_err *err);

/* S/MIME detached signature (DER CMS signed-data) over what data
 * delivers. The chain is checked against the keystore's anchors. */
int sg_smime_verify(const struct sg_keystore *ks, const void *der,
		    size_t der_len, struct sg_reader *data, struct sg_sig *out,
		    struct sg_err *err);

/* S/MIME opaque signed-data: the DER read from der (e.g. a spool), whose
 * signed content is read from there while it is verified (never held)
 * and goes to content (when not NULL; discard it unless the signature
 * holds). */
int sg_smime_verify_opaque(const struct sg_keystore *ks,
			   const struct sg_source *der,
			   struct sg_writer *content, struct sg_sig *out,
			   struct sg_err *err);

#endif
