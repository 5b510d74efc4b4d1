/* Internals of the S/MIME code (crypto/smime*.c). */
#ifndef SEALGATE_SMIME_INT_H
#define SEALGATE_SMIME_INT_H

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/x509.h>

#include "sealgate/smime.h"

/* BIOs over a reader / writer; the callbacks must outlive the BIO. */
BIO *sg_bio_reader(struct sg_reader *r);
BIO *sg_bio_writer(struct sg_writer *w);

/* A memory BIO with the contents of a keystore file, opened without
 * following a symbolic link; NULL when it cannot be read. */
BIO *sg_bio_keystore_file(const char *path);

/* True when addr is one of the certificate's addresses (SAN rfc822Name,
 * else subject emailAddress), compared case-insensitively. */
bool sg_x509_has_email(X509 *cert, const char *addr);

/* Upper-case hex SHA-256 of the certificate's DER. */
void sg_x509_fpr(X509 *cert, char fpr[SG_FPR_MAX]);

/* Reads smime/SUB/FPR.pem. (transfer full) */
X509 *sg_smime_load_cert(const struct sg_keystore *ks, const char *sub,
			 const char *fpr);

/* Whether smime/keys holds FPR.pem: for a snapshot, when it was built. */
bool sg_smime_has_private_key(const struct sg_keystore *ks, const char *fpr);

/* All certificates in smime/SUB. (transfer full) */
STACK_OF(X509) *sg_smime_load_dir(const struct sg_keystore *ks,
				  const char *sub);

/* The ciphers of enum sg_smime_cipher that si's SMIMECapabilities signed
 * attribute announces (SG_SMIME_CAP bits; others are left out). False
 * when si has none, or more than one, or one beyond the bounds of
 * sealgate/smimecaps.h or not readable. */
bool sg_smime_caps_announced(CMS_SignerInfo *si, unsigned *out);

/* Drains OpenSSL's error queue into err with a prefix. */
int sg_ssl_fail(struct sg_err *err, int code, const char *what);

/* Runs change on a copy of the S/MIME store (staged is ks with smime_dir
 * set to the copy); the copy replaces the store when change succeeds and
 * sets *changed (sg_keystore_stage_begin). */
typedef int (*sg_smime_change)(const struct sg_keystore *staged, void *arg,
			       bool *changed, struct sg_err *err);
int sg_smime_staged(const struct sg_keystore *ks, sg_smime_change change,
		    void *arg, struct sg_err *err);

#endif
