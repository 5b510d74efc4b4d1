/* Importing S/MIME material into the keystore: certificates (PEM, DER,
 * chains, PKCS#7 bundles), PKCS#12 files and private keys. A file is
 * parsed and checked completely before anything is written, and each file
 * is written aside and renamed into place. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "smime_int.h"
#include "smime_pbe.h"

struct parsed {
	STACK_OF(X509) *certs;
	GPtrArray *keys;        /* EVP_PKEY * */
	STACK_OF(X509) *stored; /* the store's certificates, when keys */
	uint64_t pbe_iterations; /* key derivation of the file so far */
};

bool
sg_smime_looks_like(const void *data, size_t len)
{
	const unsigned char *p = data;

	/* PEM, or DER starting with a SEQUENCE. */
	return g_strstr_len(data, (gssize)MIN(len, 65536), "-----BEGIN ") != NULL ||
	    (len > 2 && p[0] == 0x30);
}

static int
pass_cb(char *buf, int size, int rwflag, void *u)
{
	const char *pass = u;
	int n;

	(void)rwflag;
	if (pass == NULL)
		return -1;
	n = (int)strlen(pass);
	if (n > size)
		n = size;
	memcpy(buf, pass, (size_t)n);
	return n;
}

static void
add_certs(struct parsed *p, STACK_OF(X509) *more)
{
	for (int i = 0; more != NULL && i < sk_X509_num(more); i++) {
		X509 *c = sk_X509_value(more, i);

		X509_up_ref(c);
		sk_X509_push(p->certs, c);
	}
}

static int
parse_pkcs7(struct parsed *p, PKCS7 *p7, struct sg_err *err)
{
	STACK_OF(X509) *certs = NULL;

	if (PKCS7_type_is_signed(p7))
		certs = p7->d.sign->cert;
	else if (PKCS7_type_is_signedAndEnveloped(p7))
		certs = p7->d.signed_and_enveloped->cert;
	if (certs == NULL || sk_X509_num(certs) == 0)
		return sg_err_set(err, SG_EINVAL, "PKCS#7 bundle without certificates");
	add_certs(p, certs);
	return SG_OK;
}

static int
parse_pkcs12(struct parsed *p, PKCS12 *p12, const char *pass,
	     struct sg_err *err)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	STACK_OF(X509) *ca = NULL;
	int rc;

	/* Iteration counts are the sender's: bounded before any derivation
	 * (the MAC check derives a key already). */
	rc = sg_pbe_check_pkcs12(p12, pass ? pass : "", &p->pbe_iterations,
	    err);
	if (rc < 0)
		return rc;
	if (!PKCS12_verify_mac(p12, pass ? pass : "", -1) &&
	    !(pass == NULL && PKCS12_verify_mac(p12, NULL, 0)))
		return sg_err_set(err, SG_EINVAL, pass == NULL
		    ? "PKCS#12 file is protected: give --passphrase-file"
		    : "wrong passphrase for the PKCS#12 file");
	if (!PKCS12_parse(p12, pass ? pass : "", &key, &cert, &ca))
		return sg_ssl_fail(err, SG_EINVAL, "cannot read the PKCS#12 file");
	if (key != NULL && cert != NULL && X509_check_private_key(cert, key) != 1) {
		EVP_PKEY_free(key);
		X509_free(cert);
		sk_X509_pop_free(ca, X509_free);
		return sg_err_set(err, SG_EINVAL,
		    "the PKCS#12 key does not match its certificate");
	}
	if (cert != NULL)
		sk_X509_push(p->certs, cert);
	if (key != NULL)
		g_ptr_array_add(p->keys, key);
	add_certs(p, ca);
	sk_X509_pop_free(ca, X509_free);
	return SG_OK;
}

/* A traditional PEM key ("RSA PRIVATE KEY" and the like), possibly
 * encrypted with Proc-Type/DEK-Info headers. */
static int
parse_legacy_key(struct parsed *p, const char *header, unsigned char *der,
		 long len, const char *pass, struct sg_err *err)
{
	EVP_CIPHER_INFO cipher;
	const unsigned char *q = der;
	EVP_PKEY *key;

	if (!PEM_get_EVP_CIPHER_INFO((char *)header, &cipher))
		return sg_ssl_fail(err, SG_EINVAL, "bad private key header");
	if (cipher.cipher != NULL && pass == NULL)
		return sg_err_set(err, SG_EINVAL,
		    "private key is protected: give --passphrase-file");
	if (!PEM_do_header(&cipher, der, &len, pass_cb, (void *)pass))
		return sg_ssl_fail(err, SG_EINVAL,
		    "wrong passphrase for the private key");
	key = d2i_AutoPrivateKey(NULL, &q, len);
	if (key == NULL)
		return sg_ssl_fail(err, SG_EINVAL, "bad private key");
	g_ptr_array_add(p->keys, key);
	return SG_OK;
}

/* One PEM block by its name. */
static int
parse_pem_block(struct parsed *p, const char *name, const char *header,
		unsigned char *der, long len, const char *pass,
		struct sg_err *err)
{
	const unsigned char *q = der;
	X509 *cert;
	PKCS7 *p7;
	EVP_PKEY *key;

	if (strstr(name, "PRIVATE KEY") != NULL &&
	    strcmp(name, "PRIVATE KEY") != 0 &&
	    strcmp(name, "ENCRYPTED PRIVATE KEY") != 0)
		return parse_legacy_key(p, header, der, len, pass, err);
	if (strcmp(name, "CERTIFICATE") == 0 ||
	    strcmp(name, "X509 CERTIFICATE") == 0) {
		cert = d2i_X509(NULL, &q, len);
		if (cert == NULL)
			return sg_ssl_fail(err, SG_EINVAL, "bad certificate");
		sk_X509_push(p->certs, cert);
		return SG_OK;
	}
	if (strcmp(name, "PKCS12") == 0) {
		/* gpgsm --armor --export-secret-key-p12 */
		PKCS12 *p12 = d2i_PKCS12(NULL, &q, len);
		int rc;

		if (p12 == NULL || q != der + len) {
			PKCS12_free(p12);
			return sg_ssl_fail(err, SG_EINVAL, "bad PKCS#12 block");
		}
		rc = parse_pkcs12(p, p12, pass, err);
		PKCS12_free(p12);
		return rc;
	}
	if (strcmp(name, "PKCS7") == 0) {
		int rc;

		p7 = d2i_PKCS7(NULL, &q, len);
		if (p7 == NULL)
			return sg_ssl_fail(err, SG_EINVAL, "bad PKCS#7 bundle");
		rc = parse_pkcs7(p, p7, err);
		PKCS7_free(p7);
		return rc;
	}
	if (strcmp(name, "ENCRYPTED PRIVATE KEY") == 0) {
		int rc = sg_pbe_check_pkcs8(der, len, &p->pbe_iterations, err);

		if (rc < 0)
			return rc;
	}
	if (strstr(name, "PRIVATE KEY") != NULL) {
		char *pem = g_strdup_printf("-----BEGIN %s-----\n", name);
		BIO *b = BIO_new(BIO_s_mem());
		BIO *b64 = BIO_new(BIO_f_base64());

		/* Re-armor the block so PEM_read_bio_PrivateKey handles
		 * every key format, encrypted or not. */
		BIO_write(b, pem, (int)strlen(pem));
		b64 = BIO_push(b64, b);
		BIO_write(b64, der, (int)len);
		BIO_flush(b64);
		g_free(pem);
		pem = g_strdup_printf("-----END %s-----\n", name);
		BIO_write(b, pem, (int)strlen(pem));
		g_free(pem);
		key = PEM_read_bio_PrivateKey(b, NULL, pass_cb, (void *)pass);
		BIO_free_all(b64);
		if (key == NULL)
			return sg_ssl_fail(err, SG_EINVAL, strstr(name, "ENCRYPTED")
			    ? (pass ? "wrong passphrase for the private key"
			    : "private key is protected: give --passphrase-file")
			    : "bad private key");
		g_ptr_array_add(p->keys, key);
		return SG_OK;
	}
	return sg_err_set(err, SG_EINVAL, "unsupported PEM block \"%s\"", name);
}

static int
parse_pem(struct parsed *p, const void *data, size_t len, const char *pass,
	  struct sg_err *err)
{
	BIO *b = BIO_new_mem_buf(data, (int)len);
	char *name = NULL, *header = NULL;
	unsigned char *der = NULL;
	long dlen = 0;
	unsigned long e;
	int rc = SG_OK, blocks = 0;

	while (rc == 0 && PEM_read_bio(b, &name, &header, &der, &dlen) == 1) {
		blocks++;
		rc = parse_pem_block(p, name, header, der, dlen, pass, err);
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(der);
	}
	/* The end of the file, or a block that is cut or malformed: never
	 * the blocks before it alone. */
	e = ERR_peek_last_error();
	if (rc == 0 && blocks > 0 && (ERR_GET_LIB(e) != ERR_LIB_PEM ||
	    ERR_GET_REASON(e) != PEM_R_NO_START_LINE))
		rc = sg_err_set(err, SG_EINVAL, "malformed PEM block after "
		    "block %d", blocks);
	ERR_clear_error();
	BIO_free(b);
	if (rc == 0 && blocks == 0)
		rc = sg_err_set(err, SG_EINVAL, "no certificate or key found");
	return rc;
}

static int
parse_der(struct parsed *p, const void *data, size_t len, const char *pass,
	  struct sg_err *err)
{
	const unsigned char *q = data;
	X509 *cert;
	PKCS7 *p7;
	PKCS12 *p12;
	int rc;

	cert = d2i_X509(NULL, &q, (long)len);
	if (cert != NULL && q == (const unsigned char *)data + len) {
		sk_X509_push(p->certs, cert);
		return SG_OK;
	}
	X509_free(cert);
	q = data;
	p12 = d2i_PKCS12(NULL, &q, (long)len);
	if (p12 != NULL) {
		rc = parse_pkcs12(p, p12, pass, err);
		PKCS12_free(p12);
		return rc;
	}
	q = data;
	p7 = d2i_PKCS7(NULL, &q, (long)len);
	if (p7 != NULL) {
		rc = parse_pkcs7(p, p7, err);
		PKCS7_free(p7);
		return rc;
	}
	ERR_clear_error();
	return sg_err_set(err, SG_EINVAL, "not a certificate, PKCS#7 bundle, "
	    "PKCS#12 file or private key");
}

/* The certificate (from the file or the keystore) a key belongs to. */
static X509 *
owner_of(EVP_PKEY *key, STACK_OF(X509) *certs, STACK_OF(X509) *stored)
{
	for (int i = 0; i < sk_X509_num(certs); i++)
		if (X509_check_private_key(sk_X509_value(certs, i), key) == 1)
			return sk_X509_value(certs, i);
	for (int i = 0; i < sk_X509_num(stored); i++)
		if (X509_check_private_key(sk_X509_value(stored, i), key) == 1)
			return sk_X509_value(stored, i);
	ERR_clear_error();
	return NULL;
}

/* Writes data to path through a temporary file and a rename. */
static int
write_atomic(const char *path, const void *data, size_t len, mode_t mode,
	     struct sg_err *err)
{
	char *tmp = g_strdup_printf("%s.tmpXXXXXX", path);
	int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, mode);
	int rc = SG_OK;

	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) < 0) {
		rc = sg_err_set(err, SG_EIO, "cannot write %s: %s", path,
		    strerror(errno));
		if (fd >= 0)
			unlink(tmp);
	} else if (rename(tmp, path) < 0) {
		rc = sg_err_set(err, SG_EIO, "cannot rename %s: %s", tmp,
		    strerror(errno));
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	g_free(tmp);
	return rc;
}

/* Stores one PEM object under smime/SUB/FPR.pem unless it is there. */
static int
store_pem(const struct sg_keystore *ks, const char *sub, const char *fpr,
	  BIO *pem, mode_t mode, bool *created, struct sg_err *err)
{
	char *name = g_strdup_printf("%s.pem", fpr);
	char *path = sg_keystore_smime_path(ks, sub, name);
	char *data;
	long len;
	int rc = SG_OK;

	*created = false;
	if (access(path, F_OK) != 0) {
		len = BIO_get_mem_data(pem, &data);
		rc = write_atomic(path, data, (size_t)len, mode, err);
		*created = rc == 0;
	}
	g_free(name);
	g_free(path);
	return rc;
}

static bool
has_email(X509 *c)
{
	STACK_OF(OPENSSL_STRING) *emails = X509_get1_email(c);
	bool yes = sk_OPENSSL_STRING_num(emails) > 0;

	X509_email_free(emails);
	return yes;
}

/* A CA certificate proper: basicConstraints with cA set (and, with a
 * keyUsage, keyCertSign). OpenSSL's other guesses (a self-signed version 1
 * certificate, keyUsage alone) do not count. */
static bool
is_ca(X509 *c)
{
	return X509_check_ca(c) == 1;
}

/* The certificate's subject, for messages. (transfer full) */
static char *
subject_of(X509 *c)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data = NULL, *out;
	long len;

	X509_NAME_print_ex(b, X509_get_subject_name(c), 0, XN_FLAG_RFC2253 &
	    ~ASN1_STRFLGS_ESC_MSB);
	len = BIO_get_mem_data(b, &data);
	out = len > 0 ? g_strndup(data, (gsize)len) : g_strdup("(empty subject)");
	BIO_free(b);
	return out;
}

static bool
expired(X509 *c)
{
	return X509_cmp_current_time(X509_get0_notAfter(c)) <= 0;
}

/* Why certificate c cannot be imported (flags: SG_SMIME_*), or NULL. An
 * end-entity certificate needs an address (it would be stored, but no
 * address could ever find it); a CA certificate -- a chain's intermediate
 * or, with --trust-anchor, an anchor -- needs none. None may be not yet
 * valid, nor expired, but for an end-entity certificate that is not made a
 * trust anchor (check_parsed decides about that one: expired_refusal). */
static const char *
refusal(X509 *c, int flags)
{
	if (!is_ca(c) && !(flags & SG_SMIME_TRUST_ANCHOR) && !has_email(c))
		return "certificate without an email address (subjectAltName "
		    "rfc822Name or subject emailAddress)";
	if (expired(c) && (is_ca(c) || (flags & SG_SMIME_TRUST_ANCHOR)))
		return "certificate has expired";
	if (X509_cmp_current_time(X509_get0_notBefore(c)) >= 0)
		return "certificate is not valid yet";
	return NULL;
}

static bool
internal_address(X509 *c, const struct sg_internal *internal)
{
	STACK_OF(OPENSSL_STRING) *emails = X509_get1_email(c);
	bool yes = false;

	for (int i = 0; i < sk_OPENSSL_STRING_num(emails) && !yes; i++)
		yes = sg_internal_has(internal, sk_OPENSSL_STRING_value(emails, i));
	X509_email_free(emails);
	return yes;
}

#define DECRYPT_ONLY_RULE "(an expired certificate is kept only to decrypt " \
	"for an internal address, with its private key)"

/* An expired end-entity certificate serves to decrypt only, and only with
 * its private key (in the file, or for a certificate of the store, in the
 * file too: has_key) and for an internal address; else why not, following
 * "certificate has expired". */
static const char *
expired_refusal(X509 *c, bool has_key, const struct sg_internal *internal)
{
	if (!has_key)
		return ", and the file holds no private key for it "
		    DECRYPT_ONLY_RULE;
	if (!internal_address(c, internal))
		return ", and none of its addresses is internal "
		    DECRYPT_ONLY_RULE;
	return NULL;
}

/* Refuses the file for certificate c: why (subject), more. */
static int
refuse_cert(X509 *c, const char *why, const char *more, struct sg_err *err)
{
	char *subject = subject_of(c);
	int rc = sg_err_set(err, SG_EINVAL, "%s (subject \"%s\")%s; nothing "
	    "imported", why, subject, more);

	g_free(subject);
	return rc;
}

static int
check_parsed(const struct sg_keystore *ks, struct parsed *p, int flags,
	     const struct sg_internal *internal, struct sg_err *err)
{
	if (sk_X509_num(p->certs) == 0 && (int)p->keys->len == 0)
		return sg_err_set(err, SG_EINVAL, "no certificate or key found");
	for (int i = 0; i < sk_X509_num(p->certs); i++) {
		X509 *c = sk_X509_value(p->certs, i);
		const char *why = refusal(c, flags);

		if (why != NULL)
			return refuse_cert(c, why, "", err);
	}
	/* A key may belong to a certificate imported before: read the store
	 * once, for this check and for storing. */
	if (p->keys->len > 0)
		p->stored = sg_smime_load_dir(ks, "certs");
	for (guint i = 0; i < p->keys->len; i++) {
		X509 *owner = owner_of(g_ptr_array_index(p->keys, i), p->certs,
		    p->stored);
		const char *why;

		if (owner == NULL)
			return sg_err_set(err, SG_EINVAL,
			    "private key matches no imported certificate");
		/* A key for an expired certificate of the store. */
		why = expired(owner) ? expired_refusal(owner, true, internal)
		    : NULL;
		if (why != NULL)
			return refuse_cert(owner, "certificate has expired", why,
			    err);
	}
	/* The expired ones of the file: each with its key. */
	for (int i = 0; i < sk_X509_num(p->certs); i++) {
		X509 *c = sk_X509_value(p->certs, i);
		bool has_key = false;
		const char *why;

		if (!expired(c))
			continue;
		for (guint k = 0; k < p->keys->len && !has_key; k++)
			has_key = X509_check_private_key(c,
			    g_ptr_array_index(p->keys, k)) == 1;
		ERR_clear_error();
		why = expired_refusal(c, has_key, internal);
		if (why != NULL)
			return refuse_cert(c, "certificate has expired", why, err);
	}
	return SG_OK;
}

/* Records that fpr was in the file (once), and whether it changed. */
static void
note_fpr(GPtrArray *fprs, GArray *changed, const char *fpr, int flag)
{
	for (guint i = 0; i < fprs->len; i++) {
		if (strcmp(g_ptr_array_index(fprs, i), fpr) == 0) {
			g_array_index(changed, int, i) |= flag;
			return;
		}
	}
	g_ptr_array_add(fprs, g_strdup(fpr));
	g_array_append_val(changed, flag);
}

static int
store_parsed(const struct sg_keystore *ks, struct parsed *p, int flags,
	     struct sg_smime_import *res, struct sg_err *err)
{
	GPtrArray *fprs = g_ptr_array_new();
	GArray *changed = g_array_new(FALSE, TRUE, sizeof(int));
	int rc = SG_OK, flag;
	bool created;

	for (int i = 0; i < sk_X509_num(p->certs) && rc == 0; i++) {
		X509 *c = sk_X509_value(p->certs, i);
		bool anchor = (flags & SG_SMIME_TRUST_ANCHOR) != 0;
		char fpr[SG_FPR_MAX];
		BIO *pem = BIO_new(BIO_s_mem());

		sg_x509_fpr(c, fpr);
		PEM_write_bio_X509(pem, c);
		rc = store_pem(ks, anchor ? "anchors" : "certs", fpr, pem, 0600,
		    &created, err);
		/* An explicitly trusted end-entity certificate is also a
		 * certificate to encrypt to. */
		if (rc == 0 && anchor && has_email(c)) {
			bool also;

			rc = store_pem(ks, "certs", fpr, pem, 0600, &also, err);
		}
		BIO_free(pem);
		if (anchor)
			created ? res->anchors_new++ : res->anchors_unchanged++;
		else
			created ? res->certs_new++ : res->certs_unchanged++;
		flag = created;
		note_fpr(fprs, changed, fpr, flag);
	}
	for (int i = 0; i < (int)p->keys->len && rc == 0; i++) {
		EVP_PKEY *key = g_ptr_array_index(p->keys, i);
		X509 *owner = owner_of(key, p->certs, p->stored);
		char fpr[SG_FPR_MAX];
		BIO *pem = BIO_new(BIO_s_mem());

		sg_x509_fpr(owner, fpr);
		PEM_write_bio_PrivateKey(pem, key, NULL, NULL, 0, NULL, NULL);
		rc = store_pem(ks, "keys", fpr, pem, 0600, &created, err);
		BIO_free(pem);
		created ? res->keys_new++ : res->keys_unchanged++;
		flag = created;
		note_fpr(fprs, changed, fpr, flag);
	}
	g_ptr_array_add(fprs, NULL);
	res->fprs = (char **)g_ptr_array_free(fprs, FALSE);
	res->changed = (int *)(void *)g_array_free(changed, FALSE);
	return rc;
}

struct storing {
	struct parsed *p;
	int flags;
	struct sg_smime_import *res;
};

/* store_parsed on a copy of the store (sg_smime_staged). */
static int
store_staged(const struct sg_keystore *staged, void *arg, bool *changed,
	     struct sg_err *err)
{
	struct storing *st = arg;
	int rc = store_parsed(staged, st->p, st->flags, st->res, err);

	*changed = st->res->certs_new + st->res->anchors_new +
	    st->res->keys_new > 0;
	return rc;
}

int
sg_smime_import(const struct sg_keystore *ks, const void *data, size_t len,
		const char *passphrase, int flags,
		const struct sg_internal *internal, struct sg_smime_import *res,
		struct sg_err *err)
{
	struct parsed p = { sk_X509_new_null(),
	    g_ptr_array_new_with_free_func((GDestroyNotify)EVP_PKEY_free) };
	int rc;

	memset(res, 0, sizeof(*res));
	if (g_strstr_len(data, (gssize)MIN(len, 65536), "-----BEGIN ") != NULL)
		rc = parse_pem(&p, data, len, passphrase, err);
	else
		rc = parse_der(&p, data, len, passphrase, err);
	if (rc == 0)
		rc = check_parsed(ks, &p, flags, internal, err);
	if (rc == 0 && (flags & SG_SMIME_DRY_RUN)) {
		res->certs_new = (unsigned)sk_X509_num(p.certs);
		res->keys_new = p.keys->len;
	} else if (rc == 0) {
		struct storing st = { &p, flags, res };

		rc = sg_smime_staged(ks, store_staged, &st, err);
	}
	sk_X509_pop_free(p.certs, X509_free);
	sk_X509_pop_free(p.stored, X509_free);
	g_ptr_array_free(p.keys, TRUE);
	ERR_clear_error();
	return rc;
}

void
sg_smime_import_clear(struct sg_smime_import *res)
{
	g_strfreev(res->fprs);
	g_free(res->changed);
	res->fprs = NULL;
	res->changed = NULL;
}
