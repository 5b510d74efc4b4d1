/* The in-memory index of a keystore snapshot (crypto/keyindex.c), used by
 * the lookups of crypto/openpgp.c, smime.c and keystore.c. */
#ifndef SEALGATE_KEYINDEX_H
#define SEALGATE_KEYINDEX_H

#include <stdbool.h>

#include <glib.h>
#include <openssl/x509.h>

#include "keystore_int.h"
#include "sealgate/openpgp.h"

/* The best OpenPGP key of addr for encryption (sign false: a usable
 * encryption subkey, the newest one wins) or signing (sign true: a key
 * with its secret part, the newest primary key wins), by the rules the
 * keyring listing applied; validity is judged at the time of the call.
 * SG_ENOKEY with the reason in err. */
int sg_keyindex_find_pgp(const struct sg_keyindex *idx, const char *addr,
			 bool sign, char fpr[SG_FPR_MAX], struct sg_err *err);

/* The fingerprint of the encryption subkey of the key fpr (a primary
 * key's fingerprint, as sg_keyindex_find_pgp gives it) that gpg takes:
 * the newest usable one. SG_ENOKEY when the key has none. */
int sg_keyindex_pgp_encryption_subkey(const struct sg_keyindex *idx,
				      const char *fpr, char sub[SG_FPR_MAX]);

/* The snapshot's state for in-process encryption (openpgp_rnp.c); it is
 * safe for threads. (transfer none) */
struct sg_pgp_rnp *sg_keyindex_rnp(const struct sg_keyindex *idx);

/* Whether addr has, by the snapshot, a key with the secret part of an
 * encryption subkey, by the rules of sg_openpgp_decryption_subkeys
 * (expired and revoked keys included). */
bool sg_keyindex_pgp_decrypts(const struct sg_keyindex *idx, const char *addr);

/* The snapshot's certificates of smime/SUB ("certs" or "anchors"), a new
 * reference to the stack; NULL for another directory. (transfer full) */
STACK_OF(X509) *sg_keyindex_certs(const struct sg_keyindex *idx,
				  const char *sub);

/* The snapshot's certificate of smime/certs whose SHA-256 fingerprint is
 * fpr (upper-case hex), a new reference; NULL when it has none.
 * (transfer full) */
X509 *sg_keyindex_cert(const struct sg_keyindex *idx, const char *fpr);

/* Positions in the "certs" stack of the certificates naming addr, in
 * order; NULL when none does. (transfer none) */
const GArray *sg_keyindex_cert_candidates(const struct sg_keyindex *idx,
					  const char *addr);

/* Whether smime/keys held FPR.pem when the snapshot was built. */
bool sg_keyindex_has_smime_key(const struct sg_keyindex *idx,
			       const char *fpr);

#endif
