/* S/MIME with OpenSSL CMS, in process, on the keystore's smime/ store.
 * Functions may run on several threads at once. */
#ifndef SEALGATE_SMIME_H
#define SEALGATE_SMIME_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "sealgate/error.h"
#include "sealgate/io.h"
#include "sealgate/keystore.h"
#include "sealgate/openpgp.h"

/* Content encryption. GCM gives AuthEnvelopedData (RFC 5083/5084), CBC
 * EnvelopedData for older clients. In order of compatibility: when
 * recipients ask for different ones, the highest value serves them all. */
enum sg_smime_cipher {
	SG_SMIME_AES256_GCM = 0,
	SG_SMIME_AES128_GCM,
	SG_SMIME_AES256_CBC,
	SG_SMIME_AES128_CBC,
};

/* "authEnveloped-data" or "enveloped-data". */
const char *sg_smime_type(int cipher);

/* Finds the best usable encryption certificate for addr (valid now, key
 * usage and extended key usage allow encryption, addr in the certificate,
 * chains to a trust anchor or is one itself). SG_ENOKEY when
 * there is none; err then says why the best candidate was refused. */
int sg_smime_find_cert(const struct sg_keystore *ks, const char *addr,
		       char fpr[SG_FPR_MAX], struct sg_err *err);

/* Finds the sender's best signing certificate: one with its private key
 * in the keystore, valid, key usage and extended key usage allowing
 * signing, chaining to a trust anchor. SG_ENOKEY when there is none. */
int sg_smime_find_signing_cert(const struct sg_keystore *ks, const char *addr,
			       char fpr[SG_FPR_MAX], struct sg_err *err);

/* Writes a detached CMS signature (SHA-256, signer certificate and its
 * intermediates included) of in to out, base64 with CRLF lines. */
int sg_smime_sign(const struct sg_keystore *ks, const char *fpr,
		  struct sg_reader *in, struct sg_writer *out,
		  struct sg_err *err);

/* One recipient: a certificate and whether RSA-OAEP is used for it. */
struct sg_smime_rcpt {
	const char *fpr;
	bool oaep;
};

/* Encrypts everything in to the certificates, writing the DER CMS object
 * base64 encoded (CRLF lines) to out. */
int sg_smime_encrypt(const struct sg_keystore *ks,
		     const struct sg_smime_rcpt *rcpts, size_t n, int cipher,
		     struct sg_reader *in, struct sg_writer *out,
		     struct sg_err *err);

enum {
	/* Certificates become trust anchors; one with an email address is
	 * also usable as it is (explicitly trusted). */
	SG_SMIME_TRUST_ANCHOR = 1 << 0,
	/* Check everything, store nothing; certs_new and keys_new count
	 * what the file holds. */
	SG_SMIME_DRY_RUN = 1 << 1,
};

/* What one import changed. */
struct sg_smime_import {
	unsigned certs_new, certs_unchanged, keys_new, keys_unchanged;
	unsigned anchors_new, anchors_unchanged;
	char **fprs;            /* NULL-terminated: certificates in the file
				 * and those its keys belong to */
	int *changed;           /* per fprs entry: something new stored */
};

/* Imports certificates (PEM, DER, PEM chains, PKCS#7 bundles), PKCS#12
 * (with passphrase) and private keys matching a certificate. Everything in
 * data is checked before anything is written. SG_EINVAL: not S/MIME
 * material, or a certificate that cannot serve (err says why): not valid
 * yet, or expired -- but for an end-entity certificate with its private
 * key in data and an address that internal says is internal, which enters
 * to decrypt only (the certificate lookups never take an expired one to
 * encrypt or sign). A private key for an expired certificate of the store
 * needs such an address too. */
int sg_smime_import(const struct sg_keystore *ks, const void *data, size_t len,
		    const char *passphrase, int flags,
		    const struct sg_internal *internal,
		    struct sg_smime_import *res, struct sg_err *err);
void sg_smime_import_clear(struct sg_smime_import *res);

/* True when data looks like something sg_smime_import may take. */
bool sg_smime_looks_like(const void *data, size_t len);

struct sg_smime_decrypted {
	const char *cipher;     /* short name, e.g. "id-aes256-GCM" */
	bool aead;              /* AES-GCM: integrity protected; CBC: none */
	char fpr[SG_FPR_MAX];   /* the certificate whose key decrypted */
};

/* Decrypts an enveloped or authEnveloped CMS object (DER or BER, read
 * from der, e.g. a spool) to out; its encrypted content is read from der
 * as it is decrypted, never held. The content encryption must be AES-GCM or
 * AES-CBC (3DES only with allow_3des), checked before decrypting
 * (SG_ECIPHER otherwise); every one of the n envelope recipients must
 * have a certificate with private key that the object is addressed to
 * (SG_ENOKEY otherwise). On failure the caller must discard what out
 * received. SG_EIO when der cannot be read. */
int sg_smime_decrypt(const struct sg_keystore *ks, const struct sg_source *der,
		     const char *const *rcpts, size_t n, bool allow_3des,
		     struct sg_writer *out, struct sg_smime_decrypted *info,
		     struct sg_err *err);

/* Writes the PEM certificates named by what (an address or a
 * fingerprint), with their private keys when secret. */
int sg_smime_export(const struct sg_keystore *ks, const char *what,
		    bool secret, struct sg_writer *out, unsigned *count,
		    struct sg_err *err);

/* Removes the certificates (and their keys) named by what; trust anchors
 * only by fingerprint. */
int sg_smime_remove(const struct sg_keystore *ks, const char *what,
		    unsigned *count, struct sg_err *err);

struct sg_smime_identity {
	const char *addr;
	const char *fpr;
	const char *state;      /* active, expired, not-yet-valid, untrusted */
	const char *why;        /* for untrusted: the reason */
	time_t expires;
	bool anchor;
	bool has_key;
};

typedef void (*sg_smime_list_cb)(const struct sg_smime_identity *id, void *arg);

/* Calls cb for every address of every certificate (fpr: only that one). */
int sg_smime_list(const struct sg_keystore *ks, const char *fpr,
		  sg_smime_list_cb cb, void *arg, struct sg_err *err);

#endif
