/* S/MIME certificates and encryption with OpenSSL CMS; see
 * include/sealgate/smime.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include "keyindex.h"
#include "smime_int.h"

#define MIN_RSA_BITS 2048

int
sg_ssl_fail(struct sg_err *err, int code, const char *what)
{
	char buf[256] = "";
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last != 0)
		ERR_error_string_n(last, buf, sizeof(buf));
	return sg_err_set(err, code, "%s%s%s", what, *buf ? ": " : "", buf);
}

const char *
sg_smime_type(int cipher)
{
	return cipher == SG_SMIME_AES256_GCM || cipher == SG_SMIME_AES128_GCM
	    ? "authEnveloped-data" : "enveloped-data";
}

static const EVP_CIPHER *
evp_cipher(int cipher)
{
	switch (cipher) {
	case SG_SMIME_AES128_GCM:	return EVP_aes_128_gcm();
	case SG_SMIME_AES256_CBC:	return EVP_aes_256_cbc();
	case SG_SMIME_AES128_CBC:	return EVP_aes_128_cbc();
	default:			return EVP_aes_256_gcm();
	}
}

bool
sg_x509_has_email(X509 *cert, const char *addr)
{
	STACK_OF(OPENSSL_STRING) *emails = X509_get1_email(cert);
	bool found = false;

	for (int i = 0; i < sk_OPENSSL_STRING_num(emails) && !found; i++)
		found = g_ascii_strcasecmp(sk_OPENSSL_STRING_value(emails, i),
		    addr) == 0;
	X509_email_free(emails);
	return found;
}

void
sg_x509_fpr(X509 *cert, char fpr[SG_FPR_MAX])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	fpr[0] = '\0';
	if (X509_digest(cert, EVP_sha256(), md, &n) != 1)
		return;
	for (unsigned int i = 0; i < n && 2 * i + 2 < SG_FPR_MAX; i++)
		snprintf(fpr + 2 * i, 3, "%02X", md[i]);
}

static X509 *
load_pem_file(const char *path)
{
	BIO *b = sg_bio_keystore_file(path);
	X509 *cert;

	if (b == NULL)
		return NULL;
	cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	return cert;
}

X509 *
sg_smime_load_cert(const struct sg_keystore *ks, const char *sub,
		   const char *fpr)
{
	char *name, *path;
	X509 *cert;

	/* A snapshot's certificate: the one its lookups judged, parsed
	 * once (a PEM file read per message cost a fifth of the milter's
	 * CPU for S/MIME encryption). */
	if (ks->index != NULL && strcmp(sub, "certs") == 0)
		return sg_keyindex_cert(ks->index, fpr);
	name = g_strdup_printf("%s.pem", fpr);
	path = sg_keystore_smime_path(ks, sub, name);
	cert = load_pem_file(path);

	g_free(name);
	g_free(path);
	return cert;
}

/* The certificates in directory dir; *same: dir still names the
 * directory that was read, whose identity is *read (zeroed when dir could
 * not be read). */
static STACK_OF(X509) *
read_cert_dir(const char *dir, struct stat *read_st, bool *same)
{
	STACK_OF(X509) *certs = sk_X509_new_null();
	GByteArray *data;
	guint8 buf[16384];
	struct stat now;
	struct dirent *e;
	DIR *d = NULL;
	int fd, dfd = -1;

	*same = true;
	memset(read_st, 0, sizeof(*read_st));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, read_st) == 0)
		dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd >= 0)
		d = fdopendir(dfd);
	if (d == NULL) {
		if (dfd >= 0)
			close(dfd);
		if (fd >= 0)
			close(fd);
		return certs;
	}
	data = g_byte_array_new();
	while ((e = readdir(d)) != NULL) {
		ssize_t n;
		int f;
		BIO *b;
		X509 *cert = NULL;

		if (!g_str_has_suffix(e->d_name, ".pem"))
			continue;
		f = openat(fd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (f < 0)
			continue;
		/* Whole, then parsed: PEM over a file descriptor BIO reads
		 * a byte per system call. */
		g_byte_array_set_size(data, 0);
		while ((n = read(f, buf, sizeof(buf))) > 0)
			g_byte_array_append(data, buf, (guint)n);
		close(f);
		b = n == 0 ? BIO_new_mem_buf(data->data, (int)data->len) : NULL;
		if (b != NULL)
			cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
		if (cert != NULL && !sk_X509_push(certs, cert))
			X509_free(cert);
	}
	closedir(d);
	g_byte_array_free(data, TRUE);
	*same = stat(dir, &now) == 0 && now.st_dev == read_st->st_dev &&
	    now.st_ino == read_st->st_ino;
	close(fd);
	return certs;
}

/*
 * Certificates read from a directory, kept while it is the same directory.
 * Every change through `sealgate keys` replaces the whole store
 * (sg_keystore_stage_commit), and a file added or removed by hand changes
 * the directory's times, so the directory's identity and times say whether
 * a copy is current. The daemon thus parses a store once per change, not
 * once per message.
 */
#define CERT_CACHE_MAX 8

struct cert_cache {
	char *dir;
	struct stat st;
	STACK_OF(X509) *certs;
};

static GMutex cache_lock;
static GPtrArray *cert_caches;          /* struct cert_cache *, newest last */

static bool
same_dir(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	    a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	    a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	    a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void
cert_cache_free(gpointer p)
{
	struct cert_cache *c = p;

	g_free(c->dir);
	sk_X509_pop_free(c->certs, X509_free);
	g_free(c);
}

/* A new reference to the cached certificates of dir as st shows it, or
 * NULL. */
static STACK_OF(X509) *
cache_get(const char *dir, const struct stat *st)
{
	STACK_OF(X509) *certs = NULL;

	g_mutex_lock(&cache_lock);
	for (guint i = 0; cert_caches != NULL && i < cert_caches->len; i++) {
		struct cert_cache *c = g_ptr_array_index(cert_caches, i);

		if (strcmp(c->dir, dir) == 0 && same_dir(&c->st, st))
			certs = X509_chain_up_ref(c->certs);
	}
	g_mutex_unlock(&cache_lock);
	return certs;
}

static void
cache_put(const char *dir, const struct stat *st, STACK_OF(X509) *certs)
{
	struct cert_cache *c = g_new0(struct cert_cache, 1);

	c->dir = g_strdup(dir);
	c->st = *st;
	c->certs = X509_chain_up_ref(certs);
	g_mutex_lock(&cache_lock);
	if (cert_caches == NULL)
		cert_caches = g_ptr_array_new_with_free_func(cert_cache_free);
	for (guint i = 0; i < cert_caches->len; i++)
		if (strcmp(((struct cert_cache *)
		    g_ptr_array_index(cert_caches, i))->dir, dir) == 0)
			g_ptr_array_remove_index(cert_caches, i--);
	if (cert_caches->len >= CERT_CACHE_MAX)
		g_ptr_array_remove_index(cert_caches, 0);
	g_ptr_array_add(cert_caches, c);
	g_mutex_unlock(&cache_lock);
}

STACK_OF(X509) *
sg_smime_load_dir(const struct sg_keystore *ks, const char *sub)
{
	char *dir = sg_keystore_smime_path(ks, sub, NULL);
	STACK_OF(X509) *certs = NULL;
	struct stat st;
	bool same;

	/* A snapshot keeps what it was built with. */
	if (ks->index != NULL && (certs = sg_keyindex_certs(ks->index, sub)))
		goto out;
	if (stat(dir, &st) == 0)
		certs = cache_get(dir, &st);
	/* A change replaces the whole store and then deletes the old one
	 * (sg_keystore_stage_commit). A listing of a directory that was
	 * replaced while it was read may lack entries the deletion took
	 * away; the new directory holds them, so it is read again. Changes
	 * come seconds apart, a read takes milliseconds. */
	for (int tries = 0; certs == NULL; tries++) {
		certs = read_cert_dir(dir, &st, &same);
		if (same && st.st_ino != 0)
			cache_put(dir, &st, certs);
		if (same || tries == 100)
			break;
		sk_X509_pop_free(certs, X509_free);
		certs = NULL;
	}
out:
	g_free(dir);
	return certs;
}

/* Why cert cannot encrypt (sign false) or sign (sign true), or NULL
 * when it can. The chain is checked against anchors with intermediates
 * from pool. */
static const char *
unusable_for(const struct sg_keystore *ks, X509 *cert, bool sign,
	     STACK_OF(X509) *anchors, STACK_OF(X509) *pool, char *buf,
	     size_t len)
{
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	EVP_PKEY *pkey = X509_get0_pubkey(cert);
	uint32_t ku = X509_get_key_usage(cert);
	const char *why = NULL;
	int type;

	if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0)
		return "certificate not yet valid";
	if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
		return "certificate expired";
	if (pkey == NULL)
		return "unreadable public key";
	type = EVP_PKEY_get_base_id(pkey);
	if (type == EVP_PKEY_RSA && EVP_PKEY_get_bits(pkey) < MIN_RSA_BITS)
		return "RSA key smaller than 2048 bits";
	if (sign) {
		if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC)
			return "unsupported key type";
		if (ku != UINT32_MAX &&
		    !(ku & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)))
			return "key usage does not allow signing";
	} else if (type == EVP_PKEY_RSA) {
		if (ku != UINT32_MAX && !(ku & KU_KEY_ENCIPHERMENT))
			return "key usage does not allow key encipherment";
	} else if (type == EVP_PKEY_EC) {
		if (ku != UINT32_MAX && !(ku & KU_KEY_AGREEMENT))
			return "key usage does not allow key agreement";
	} else {
		return "unsupported key type";
	}
	if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) &&
	    !(X509_get_extended_key_usage(cert) & (XKU_SMIME | XKU_ANYEKU)))
		return "extended key usage does not include emailProtection";
	(void)ks;
	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	for (int i = 0; store != NULL && i < sk_X509_num(anchors); i++)
		X509_STORE_add_cert(store, sk_X509_value(anchors, i));
	/* An anchor ends the chain even when it is not self-signed: a
	 * partner's own certificate imported as trusted is its own anchor. */
	if (store != NULL)
		X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	if (store == NULL || ctx == NULL ||
	    !X509_STORE_CTX_init(ctx, store, cert, pool)) {
		why = "cannot check the certificate chain";
		goto out;
	}
	/* OpenSSL's S/MIME encryption purpose insists on keyEncipherment,
	 * which ECDH certificates rightly lack; the leaf's key usage was
	 * checked above, so encryption only needs the chain itself. */
	if (sign)
		X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SMIME_SIGN);
	if (X509_verify_cert(ctx) != 1) {
		snprintf(buf, len, "certificate does not chain to a trust anchor "
		    "(%s)", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(ctx)));
		why = buf;
	}
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return why;
}

const char *
sg_smime_cert_unusable(const struct sg_keystore *ks, X509 *cert,
		       STACK_OF(X509) *anchors, STACK_OF(X509) *pool, char *buf,
		       size_t len)
{
	return unusable_for(ks, cert, false, anchors, pool, buf, len);
}

bool
sg_smime_has_private_key(const struct sg_keystore *ks, const char *fpr)
{
	char *name, *path;
	bool yes;

	if (ks->index != NULL)
		return sg_keyindex_has_smime_key(ks->index, fpr);
	name = g_strdup_printf("%s.pem", fpr);
	path = sg_keystore_smime_path(ks, "keys", name);
	yes = access(path, F_OK) == 0;

	g_free(name);
	g_free(path);
	return yes;
}

/* The best certificate for addr that can encrypt, or sign (with its
 * private key in the keystore). */
static int
find_cert(const struct sg_keystore *ks, const char *addr, bool sign,
	  char fpr[SG_FPR_MAX], struct sg_err *err)
{
	STACK_OF(X509) *certs, *anchors;
	const GArray *cand;
	const ASN1_TIME *best_end = NULL;
	char buf[256], refused[300] = "";
	int rc = SG_OK;
	bool found = false;

	if (ks->index == NULL)
		return sg_err_set(err, SG_EKEYSTORE, "certificate lookup on a "
		    "keystore that is not a snapshot");
	certs = sg_smime_load_dir(ks, "certs");
	anchors = sg_smime_load_dir(ks, "anchors");
	/* The certificates that name addr, in the store's order. */
	cand = sg_keyindex_cert_candidates(ks->index, addr);
	for (guint c = 0; cand != NULL && c < cand->len; c++) {
		X509 *cert = sk_X509_value(certs, g_array_index(cand, int, c));
		const char *why;

		char cfpr[SG_FPR_MAX];

		sg_x509_fpr(cert, cfpr);
		why = sign && !sg_smime_has_private_key(ks, cfpr) ? "no private key"
		    : unusable_for(ks, cert, sign, anchors, certs, buf, sizeof(buf));
		if (why != NULL) {
			if (*refused == '\0')
				snprintf(refused, sizeof(refused), "%s", why);
			continue;
		}
		/* Of several usable ones, the one valid the longest. */
		if (best_end == NULL ||
		    ASN1_TIME_compare(X509_get0_notAfter(cert), best_end) > 0) {
			best_end = X509_get0_notAfter(cert);
			g_strlcpy(fpr, cfpr, SG_FPR_MAX);
			found = true;
		}
	}
	if (!found)
		rc = sg_err_set(err, SG_ENOKEY, "%s", *refused ? refused
		    : "no S/MIME certificate");
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(anchors, X509_free);
	return rc;
}

int
sg_smime_find_cert(const struct sg_keystore *ks, const char *addr,
		   char fpr[SG_FPR_MAX], struct sg_err *err)
{
	return find_cert(ks, addr, false, fpr, err);
}

int
sg_smime_find_signing_cert(const struct sg_keystore *ks, const char *addr,
			   char fpr[SG_FPR_MAX], struct sg_err *err)
{
	return find_cert(ks, addr, true, fpr, err);
}

EVP_PKEY *
sg_smime_load_key(const struct sg_keystore *ks, const char *fpr)
{
	char *name = g_strdup_printf("%s.pem", fpr);
	char *path = sg_keystore_smime_path(ks, "keys", name);
	BIO *b = sg_bio_keystore_file(path);
	EVP_PKEY *key = NULL;

	if (b != NULL)
		key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	g_free(name);
	g_free(path);
	return key;
}

/* Adds the intermediate certificates between cert and its anchor. */
static void
add_chain(const struct sg_keystore *ks, CMS_ContentInfo *cms, X509 *cert)
{
	STACK_OF(X509) *pool = sg_smime_load_dir(ks, "certs");
	STACK_OF(X509) *anchors = sg_smime_load_dir(ks, "anchors");
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *chain = NULL;

	for (int i = 0; i < sk_X509_num(anchors); i++)
		X509_STORE_add_cert(store, sk_X509_value(anchors, i));
	if (X509_STORE_CTX_init(ctx, store, cert, pool) &&
	    X509_verify_cert(ctx) == 1)
		chain = X509_STORE_CTX_get1_chain(ctx);
	/* Not the signer itself (CMS adds it) nor the self-signed root. */
	for (int i = 1; i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);

		if (X509_check_issued(c, c) != X509_V_OK)
			CMS_add1_cert(cms, c);
	}
	sk_X509_pop_free(chain, X509_free);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(pool, X509_free);
	sk_X509_pop_free(anchors, X509_free);
	ERR_clear_error();
}

/* A BIO reading from in, and a base64 BIO chain writing to out. */
static int
open_bios(struct sg_reader *in, struct sg_writer *out, BIO **inb, BIO **b64,
	  struct sg_err *err)
{
	BIO *sink = sg_bio_writer(out);

	*inb = sg_bio_reader(in);
	*b64 = BIO_new(BIO_f_base64());
	if (*inb == NULL || sink == NULL || *b64 == NULL) {
		BIO_free(sink);
		return sg_err_set(err, SG_ENOMEM, "out of memory");
	}
	*b64 = BIO_push(*b64, sink);
	return SG_OK;
}

/* The SMIMECapabilities of sealgate's signatures: what it decrypts,
 * strongest first (OpenSSL's own list would announce RC2 and DES, which
 * sealgate refuses), so that peers can choose by it (RFC 8551 2.7). */
static int
add_capabilities(CMS_SignerInfo *si)
{
	static const int nids[] = { NID_aes_256_gcm, NID_aes_128_gcm,
		NID_aes_256_cbc, NID_aes_128_cbc };
	STACK_OF(X509_ALGOR) *caps = NULL;
	int ok = 1;

	for (size_t i = 0; i < G_N_ELEMENTS(nids) && ok == 1; i++)
		ok = CMS_add_simple_smimecap(&caps, nids[i], -1);
	if (ok == 1)
		ok = CMS_add_smimecap(si, caps);
	sk_X509_ALGOR_pop_free(caps, X509_ALGOR_free);
	return ok;
}

int
sg_smime_sign(const struct sg_keystore *ks, const char *fpr,
	      struct sg_reader *in, struct sg_writer *out, struct sg_err *err)
{
	const int flags = CMS_DETACHED | CMS_BINARY;
	CMS_ContentInfo *cms = NULL;
	CMS_SignerInfo *si;
	X509 *cert = sg_smime_load_cert(ks, "certs", fpr);
	EVP_PKEY *key = sg_smime_load_key(ks, fpr);
	BIO *inb = NULL, *b64 = NULL;
	int rc = SG_OK;

	if (cert == NULL || key == NULL) {
		rc = sg_err_set(err, SG_ENOKEY, "signing certificate or key %s "
		    "vanished", fpr);
		goto out;
	}
	cms = CMS_sign(NULL, NULL, NULL, NULL, flags | CMS_PARTIAL);
	si = cms != NULL ? CMS_add1_signer(cms, cert, key, EVP_sha256(),
	    flags | CMS_NOSMIMECAP) : NULL;
	if (si == NULL || add_capabilities(si) != 1) {
		rc = sg_ssl_fail(err, SG_ECRYPTO, "cannot set up the signature");
		goto out;
	}
	add_chain(ks, cms, cert);
	rc = open_bios(in, out, &inb, &b64, err);
	if (rc < 0)
		goto out;
	if (CMS_final(cms, inb, NULL, flags) != 1 ||
	    i2d_CMS_bio(b64, cms) != 1 || BIO_flush(b64) != 1)
		rc = sg_ssl_fail(err, SG_ECRYPTO, "S/MIME signing failed");
out:
	BIO_free_all(b64);
	BIO_free(inb);
	CMS_ContentInfo_free(cms);
	EVP_PKEY_free(key);
	X509_free(cert);
	ERR_clear_error();
	return rc;
}

static int
add_recipient(CMS_ContentInfo *cms, X509 *cert, bool oaep, struct sg_err *err)
{
	bool rsa = EVP_PKEY_get_base_id(X509_get0_pubkey(cert)) == EVP_PKEY_RSA;
	CMS_RecipientInfo *ri;
	EVP_PKEY_CTX *pctx;

	ri = CMS_add1_recipient_cert(cms, cert, rsa && oaep ? CMS_KEY_PARAM : 0);
	if (ri == NULL)
		return sg_ssl_fail(err, SG_ECRYPTO, "cannot add a recipient");
	if (!(rsa && oaep))
		return SG_OK;
	pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
	if (pctx == NULL ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0)
		return sg_ssl_fail(err, SG_ECRYPTO, "cannot set RSA-OAEP");
	return SG_OK;
}

int
sg_smime_encrypt(const struct sg_keystore *ks,
		 const struct sg_smime_rcpt *rcpts, size_t n, int cipher,
		 struct sg_reader *in, struct sg_writer *out, struct sg_err *err)
{
	const int flags = CMS_BINARY | CMS_STREAM | CMS_PARTIAL;
	CMS_ContentInfo *cms = NULL;
	BIO *inb = NULL, *b64 = NULL;
	int rc = SG_OK;

	cms = CMS_encrypt(NULL, NULL, evp_cipher(cipher), flags);
	if (cms == NULL) {
		rc = sg_ssl_fail(err, SG_ECRYPTO, "CMS_encrypt");
		goto out;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		X509 *cert = sg_smime_load_cert(ks, "certs", rcpts[i].fpr);

		if (cert == NULL) {
			rc = sg_err_set(err, SG_ENOKEY, "certificate %s vanished",
			    rcpts[i].fpr);
			break;
		}
		rc = add_recipient(cms, cert, rcpts[i].oaep, err);
		X509_free(cert);
	}
	if (rc < 0)
		goto out;
	rc = open_bios(in, out, &inb, &b64, err);
	if (rc < 0)
		goto out;
	if (i2d_CMS_bio_stream(b64, cms, inb, flags) != 1 || BIO_flush(b64) != 1)
		rc = sg_ssl_fail(err, SG_ECRYPTO, "S/MIME encryption failed");
out:
	BIO_free_all(b64);
	BIO_free(inb);
	CMS_ContentInfo_free(cms);
	ERR_clear_error();
	return rc;
}
