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

/* The certificate FPR of smime/SUB: a snapshot's own (certs), else
 * smime/SUB/FPR.pem. (transfer full) */
X509 *sg_smime_load_cert(const struct sg_keystore *ks, const char *sub,
			 const char *fpr);

/* The private key smime/keys/FPR.pem, NULL when it is missing or does not
 * parse. (transfer full) */
EVP_PKEY *sg_smime_load_key(const struct sg_keystore *ks, const char *fpr);

/* Why cert cannot be encrypted to (key type and size, key usage, a chain
 * to one of anchors through pool), in buf or a fixed text; NULL when it
 * can. */
const char *sg_smime_cert_unusable(const struct sg_keystore *ks, X509 *cert,
				   STACK_OF(X509) *anchors,
				   STACK_OF(X509) *pool, char *buf, size_t len);

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

/* Where the content of a CMS object in a source lies (cms_split.c). */
struct sg_cms_content {
	struct sg_source src;
	off_t off;              /* the header of its OCTET STRING */
	off_t limit;            /* how far that may reach */
	off_t top_end;          /* just past the whole CMS object */
};

/* Splits the CMS object at the start of der into its skeleton (the object
 * without its content, in memory) and where the content lies: the
 * encryptedContent of (Auth)EnvelopedData, or with explicit_content the
 * eContent of SignedData. SG_EMALFORMED when there is no such content or
 * the object around it is not well-formed BER; SG_EIO when der cannot be
 * read. (transfer full: *skeleton) */
int sg_cms_split(const struct sg_source *der, bool explicit_content,
		 GByteArray **skeleton, struct sg_cms_content *content,
		 struct sg_err *err);

/* True when the content is OCTET STRING chunks that end where they must. */
bool sg_cms_content_check(const struct sg_cms_content *content);

/* A reader (struct sg_reader's read, ctx the reader) over the bytes of
 * the content, chunk after chunk, from the source. */
struct sg_cms_reader;
struct sg_cms_reader *sg_cms_reader_new(const struct sg_cms_content *content);
int sg_cms_reader_read(void *ctx, void *buf, size_t len, size_t *nread);
/* True when the source could not be read. */
bool sg_cms_reader_io_error(const struct sg_cms_reader *r);
void sg_cms_reader_free(struct sg_cms_reader *r);

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
