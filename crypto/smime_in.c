/* Inbound S/MIME decryption: the content-encryption algorithm is checked
 * against an allow-list before anything is decrypted, and only the key of
 * an envelope recipient is used. */
#include <string.h>

#include <glib.h>
#include <openssl/asn1.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "smime_int.h"

/* A cursor over DER/BER. */
struct der {
	const unsigned char *p, *end;
};

/* What the DER of an encrypted CMS object says of itself. */
struct sg_cms_shape {
	int type;               /* NID of the content type */
	int cipher;             /* NID of the content encryption */
	long nonce_len;         /* GCM nonce; -1: absent */
	long icv_len;           /* GCM ICV length (default 12); -1: absent */
	long iv_len;            /* CBC IV; -1: absent */
	long mac_len;           /* AuthEnvelopedData MAC; -1: absent */
};

/* Reads one header; *inf set for indefinite lengths. */
static bool
der_header(struct der *d, int *tag, int *cls, long *len, bool *constructed,
	   bool *inf)
{
	const unsigned char *q = d->p;
	int ret;

	if (d->p >= d->end)
		return false;
	ret = ASN1_get_object(&q, len, tag, cls, d->end - d->p);
	if (ret & 0x80)
		return false;
	*constructed = (ret & V_ASN1_CONSTRUCTED) != 0;
	*inf = (ret & 1) != 0;
	d->p = q;
	return true;
}

/* Skips one element (its header already read), also of indefinite
 * length; depth bounds the recursion. */
static bool
der_skip_body(struct der *d, long len, bool constructed, bool inf, int depth)
{
	int tag, cls;
	long l;
	bool c, i;

	if (!inf) {
		if (len > d->end - d->p)
			return false;
		d->p += len;
		return true;
	}
	if (!constructed || depth > 32)
		return false;
	for (;;) {
		if (d->end - d->p >= 2 && d->p[0] == 0 && d->p[1] == 0) {
			d->p += 2;      /* end-of-contents */
			return true;
		}
		if (!der_header(d, &tag, &cls, &l, &c, &i) ||
		    !der_skip_body(d, l, c, i, depth + 1))
			return false;
	}
}

static bool
der_skip(struct der *d)
{
	int tag, cls;
	long len;
	bool c, i;

	return der_header(d, &tag, &cls, &len, &c, &i) &&
	    der_skip_body(d, len, c, i, 0);
}

static int
der_oid(struct der *d)
{
	const unsigned char *q = d->p;
	ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &q, d->end - d->p);
	int nid;

	if (obj == NULL)
		return NID_undef;
	nid = OBJ_obj2nid(obj);
	ASN1_OBJECT_free(obj);
	d->p = q;
	return nid;
}

/* Enters a constructed element: inner covers its content (to the end of d
 * when the length is indefinite; der_leave() then expects the
 * end-of-contents octets where inner stopped). */
static bool
der_open(struct der *d, int want_tag, int want_cls, struct der *inner,
	 bool *inf)
{
	int tag, cls;
	long len;
	bool c;

	if (!der_header(d, &tag, &cls, &len, &c, inf) || !c ||
	    tag != want_tag || cls != want_cls)
		return false;
	if (!*inf && len > d->end - d->p)
		return false;
	inner->p = d->p;
	inner->end = *inf ? d->end : d->p + len;
	return true;
}

static bool
der_at_end(const struct der *d, bool inf)
{
	if (inf)
		return d->end - d->p >= 2 && d->p[0] == 0 && d->p[1] == 0;
	return d->p >= d->end;
}

static bool
der_leave(struct der *d, const struct der *inner, bool inf)
{
	if (!der_at_end(inner, inf))
		return false;
	d->p = inf ? inner->p + 2 : inner->end;
	return true;
}

/* The tag and class of the next element, without moving. */
static bool
der_peek(const struct der *d, int *tag, int *cls)
{
	struct der copy = *d;
	long len;
	bool c, i;

	return der_header(&copy, tag, cls, &len, &c, &i);
}

/* A primitive element: its value and length. */
static bool
der_prim(struct der *d, int want_tag, const unsigned char **val, long *len)
{
	int tag, cls;
	bool c, i;

	if (!der_header(d, &tag, &cls, len, &c, &i) || c || i ||
	    tag != want_tag || cls != V_ASN1_UNIVERSAL || *len > d->end - d->p)
		return false;
	*val = d->p;
	d->p += *len;
	return true;
}

/* A small non-negative INTEGER. */
static bool
der_small_int(struct der *d, long *out)
{
	const unsigned char *v;
	long len;

	if (!der_prim(d, V_ASN1_INTEGER, &v, &len) || len < 1 || len > 3 ||
	    (v[0] & 0x80))
		return false;
	*out = 0;
	for (long k = 0; k < len; k++)
		*out = (*out << 8) | v[k];
	return true;
}

static bool
is_gcm(int nid)
{
	return nid == NID_aes_128_gcm || nid == NID_aes_192_gcm ||
	    nid == NID_aes_256_gcm;
}

static bool
is_cbc(int nid)
{
	return nid == NID_aes_128_cbc || nid == NID_aes_192_cbc ||
	    nid == NID_aes_256_cbc || nid == NID_des_ede3_cbc;
}

/* The content-encryption parameters: the GCM nonce and ICV length
 * (RFC 5084; the ICV length defaults to 12), or the CBC IV. */
static bool
cms_cipher_params(struct der *alg, bool inf, struct sg_cms_shape *sh)
{
	const unsigned char *v;
	struct der gp;
	bool ginf;

	if (der_at_end(alg, inf))
		return true;                    /* no parameters */
	if (!is_gcm(sh->cipher) && !is_cbc(sh->cipher))
		return der_skip(alg);           /* refused by check_shape */
	if (is_gcm(sh->cipher)) {
		if (!der_open(alg, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &gp, &ginf) ||
		    !der_prim(&gp, V_ASN1_OCTET_STRING, &v, &sh->nonce_len))
			return false;
		sh->icv_len = 12;
		if (!der_at_end(&gp, ginf) && !der_small_int(&gp, &sh->icv_len))
			return false;
		return der_leave(alg, &gp, ginf);
	}
	return der_prim(alg, V_ASN1_OCTET_STRING, &v, &sh->iv_len);
}

/* Reads the shape of an enveloped or authEnveloped CMS object from the
 * DER without decrypting: content type, content-encryption algorithm and
 * its parameters, and the length of the MAC. */
static bool
cms_shape(const unsigned char *der, size_t len, struct sg_cms_shape *sh)
{
	struct der top = { der, der + len }, ci, ex, ed, eci, alg;
	const unsigned char *v;
	bool i0, i1, i2, i3, i4;
	int tag, cls;

	memset(sh, 0, sizeof(*sh));
	sh->cipher = NID_undef;
	sh->nonce_len = sh->icv_len = sh->iv_len = sh->mac_len = -1;
	if (!der_open(&top, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &ci, &i0))
		return false;
	sh->type = der_oid(&ci);
	if (!der_open(&ci, 0, V_ASN1_CONTEXT_SPECIFIC, &ex, &i1) ||
	    !der_open(&ex, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &ed, &i2) ||
	    !der_skip(&ed) ||                            /* version */
	    !der_peek(&ed, &tag, &cls))
		return false;
	if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 0 && !der_skip(&ed))
		return false;                           /* originatorInfo */
	if (!der_peek(&ed, &tag, &cls) || tag != V_ASN1_SET || !der_skip(&ed) ||
	    !der_open(&ed, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &eci, &i3) ||
	    der_oid(&eci) == NID_undef ||
	    !der_open(&eci, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, &alg, &i4))
		return false;
	sh->cipher = der_oid(&alg);
	if (sh->cipher == NID_undef || !cms_cipher_params(&alg, i4, sh) ||
	    !der_leave(&eci, &alg, i4))
		return false;
	if (!der_at_end(&eci, i3) && !der_skip(&eci))  /* encryptedContent */
		return false;
	if (!der_leave(&ed, &eci, i3))
		return false;
	if (sh->type != NID_id_smime_ct_authEnvelopedData)
		return true;
	if (!der_peek(&ed, &tag, &cls))
		return false;
	if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 1 && !der_skip(&ed))
		return false;                           /* authAttrs */
	return der_prim(&ed, V_ASN1_OCTET_STRING, &v, &sh->mac_len);
}

/* The allow-list: AES-GCM in AuthEnvelopedData (integrity), AES-CBC in
 * EnvelopedData (none), 3DES by policy; with the parameters sealgate
 * checks itself before OpenSSL sees them (CVE-2026-34182): a 12-byte
 * nonce, an ICV length of 12 to 16 and a MAC of exactly that length. */
static int
check_shape(const struct sg_cms_shape *sh, bool allow_3des,
	    bool *aead, struct sg_err *err)
{
	switch (sh->cipher) {
	case NID_aes_128_gcm:
	case NID_aes_192_gcm:
	case NID_aes_256_gcm:
		if (sh->type != NID_id_smime_ct_authEnvelopedData)
			return sg_err_set(err, SG_EMALFORMED,
			    "AES-GCM outside AuthEnvelopedData");
		if (sh->nonce_len != 12 || sh->icv_len < 12 || sh->icv_len > 16 ||
		    sh->mac_len != sh->icv_len)
			return sg_err_set(err, SG_EMALFORMED, "AES-GCM parameters "
			    "out of bounds (nonce %ld, ICV length %ld, MAC %ld "
			    "bytes)", sh->nonce_len, sh->icv_len, sh->mac_len);
		*aead = true;
		return SG_OK;
	case NID_aes_128_cbc:
	case NID_aes_192_cbc:
	case NID_aes_256_cbc:
	case NID_des_ede3_cbc:
		if (sh->cipher == NID_des_ede3_cbc && !allow_3des)
			break;
		if (sh->type != NID_pkcs7_enveloped)
			return sg_err_set(err, SG_EMALFORMED,
			    "CBC content encryption in AuthEnvelopedData");
		if (sh->iv_len != (sh->cipher == NID_des_ede3_cbc ? 8 : 16))
			return sg_err_set(err, SG_EMALFORMED,
			    "CBC initialisation vector of %ld bytes", sh->iv_len);
		*aead = false;
		return SG_OK;
	default:
		break;
	}
	return sg_err_set(err, SG_ECIPHER, "content encryption %s is not allowed",
	    sh->cipher == NID_undef ? "unknown" : OBJ_nid2sn(sh->cipher));
}

static EVP_PKEY *
load_key(const struct sg_keystore *ks, const char *fpr)
{
	char *name = g_strdup_printf("%s.pem", fpr);
	char *path = sg_keystore_smime_path(ks, "keys", name);
	BIO *b = sg_bio_keystore_file(path);
	EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	g_free(name);
	g_free(path);
	return key;
}

/* True when one of the CMS object's RecipientInfos is for cert. */
static bool
addressed_to(CMS_ContentInfo *cms, X509 *cert)
{
	STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);

	for (int i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
		CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);

		if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS &&
		    CMS_RecipientInfo_ktri_cert_cmp(ri, cert) == 0)
			return true;
		if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_AGREE) {
			STACK_OF(CMS_RecipientEncryptedKey) *reks =
			    CMS_RecipientInfo_kari_get0_reks(ri);

			for (int j = 0; j < sk_CMS_RecipientEncryptedKey_num(reks); j++)
				if (CMS_RecipientEncryptedKey_cert_cmp(
				    sk_CMS_RecipientEncryptedKey_value(reks, j),
				    cert) == 0)
					return true;
		}
	}
	return false;
}

/* addr's certificate with a private key that the message is addressed to;
 * its fingerprint goes to fpr. */
static X509 *
recipient_cert(const struct sg_keystore *ks, CMS_ContentInfo *cms,
	       const char *addr, char fpr[SG_FPR_MAX])
{
	STACK_OF(X509) *certs = sg_smime_load_dir(ks, "certs");
	X509 *found = NULL;

	for (int i = 0; i < sk_X509_num(certs) && found == NULL; i++) {
		X509 *c = sk_X509_value(certs, i);

		if (!sg_x509_has_email(c, addr) || !addressed_to(cms, c))
			continue;
		sg_x509_fpr(c, fpr);
		if (sg_smime_has_private_key(ks, fpr)) {
			X509_up_ref(c);
			found = c;
		}
	}
	sk_X509_pop_free(certs, X509_free);
	ERR_clear_error();
	return found;
}

/* A writer that passes everything on (when next is set) and digests it. */
struct digest_writer {
	struct sg_writer *next;
	EVP_MD_CTX *md;
};

static int
digest_write(void *ctx, const void *buf, size_t len)
{
	struct digest_writer *w = ctx;

	if (EVP_DigestUpdate(w->md, buf, len) != 1)
		return SG_ECRYPTO;
	return w->next != NULL ? w->next->write(w->next->ctx, buf, len) : SG_OK;
}

/* Reads the decrypting BIO chain to its end into out: success only when
 * the cipher reports it at the end (AES-GCM: the tag verified; CBC: the
 * padding), whatever was written before. */
static int
copy_decrypted(BIO *in, struct sg_writer *out, struct sg_err *err)
{
	unsigned char buf[16384];
	int n, rc;

	if (BIO_method_type(in) != BIO_TYPE_CIPHER)
		return sg_err_set(err, SG_ECRYPTO, "no cipher to decrypt with");
	while ((n = BIO_read(in, buf, sizeof(buf))) > 0)
		if ((rc = out->write(out->ctx, buf, (size_t)n)) < 0)
			return sg_err_set(err, rc, "plaintext not taken");
	if (n < 0 || BIO_get_cipher_status(in) != 1)
		return sg_ssl_fail(err, SG_EINTEGRITY, "decryption failed");
	return SG_OK;
}

/* Decrypts the object (its skeleton, the encrypted content read from
 * where it lies) with addr's own certificate and key only: OpenSSL is
 * given that certificate, so that it tries no RecipientInfo but the one
 * for it. The plaintext goes to next (when not NULL) and its SHA-256 to
 * digest. */
static int
decrypt_as(const struct sg_keystore *ks, const GByteArray *skeleton,
	   const struct sg_cms_content *content, const char *addr,
	   struct sg_writer *next, unsigned char digest[SHA256_DIGEST_LENGTH],
	   char fpr[SG_FPR_MAX], struct sg_err *err)
{
	const unsigned char *q = skeleton->data;
	struct digest_writer dw = { next, EVP_MD_CTX_new() };
	struct sg_writer w = { digest_write, &dw };
	struct sg_cms_reader *r = sg_cms_reader_new(content);
	struct sg_reader in = { sg_cms_reader_read, r };
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q,
	    (long)skeleton->len);
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	BIO *inb = NULL, *cont = NULL;
	int rc = SG_OK;

	if (cms == NULL) {
		rc = sg_ssl_fail(err, SG_EMALFORMED, "cannot read the CMS object");
		goto out;
	}
	cert = recipient_cert(ks, cms, addr, fpr);
	if (cert == NULL) {
		rc = sg_err_set(err, SG_ENOKEY, "not encrypted to a key of %s",
		    addr);
		goto out;
	}
	/* The keystore has the key: failing to read it is the keystore's
	 * fault (e.g. its mode was changed), not the message's. */
	key = load_key(ks, fpr);
	if (key == NULL) {
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot read the private key "
		    "%s.pem of the keystore", fpr);
		goto out;
	}
	inb = sg_bio_reader(&in);
	if (inb == NULL || dw.md == NULL ||
	    EVP_DigestInit_ex(dw.md, EVP_sha256(), NULL) != 1) {
		rc = sg_err_set(err, SG_ENOMEM, "out of memory");
		goto out;
	}
	/* OpenSSL opens the content-encryption key with the recipient's key
	 * and decrypts the content, read from the source as detached
	 * content; the plaintext streams to w (CMS_decrypt itself would hold
	 * AES-GCM plaintext in memory until the tag is checked: the caller's
	 * spool holds it instead, and is discarded unless this succeeds). */
	if (CMS_decrypt_set1_pkey(cms, key, cert) != 1 ||
	    (cont = CMS_dataInit(cms, inb)) == NULL) {
		rc = sg_ssl_fail(err, SG_EINTEGRITY, "decryption failed");
		goto out;
	}
	rc = copy_decrypted(cont, &w, err);
	if (rc == 0 && EVP_DigestFinal_ex(dw.md, digest, NULL) != 1)
		rc = sg_ssl_fail(err, SG_ECRYPTO, "digest failed");
	if (rc < 0 && sg_cms_reader_io_error(r))
		rc = sg_err_set(err, SG_EIO, "cannot read the CMS object");
out:
	/* The BIOs CMS_dataInit put on top of ours. */
	while (cont != NULL && cont != inb) {
		BIO *below = BIO_pop(cont);

		BIO_free(cont);
		cont = below;
	}
	BIO_free(inb);
	sg_cms_reader_free(r);
	EVP_PKEY_free(key);
	X509_free(cert);
	CMS_ContentInfo_free(cms);
	EVP_MD_CTX_free(dw.md);
	return rc;
}

int
sg_smime_decrypt(const struct sg_keystore *ks, const struct sg_source *der,
		 const char *const *rcpts, size_t nrcpts, bool allow_3des,
		 struct sg_writer *out, struct sg_smime_decrypted *info,
		 struct sg_err *err)
{
	unsigned char first[SHA256_DIGEST_LENGTH], other[SHA256_DIGEST_LENGTH];
	struct sg_cms_shape shape;
	struct sg_cms_content content;
	GByteArray *skeleton = NULL;
	char fpr[SG_FPR_MAX];
	int rc;

	memset(info, 0, sizeof(*info));
	/* What sealgate checks, OpenSSL parses: the object without its
	 * encrypted content, which stays where it is. */
	rc = sg_cms_split(der, false, &skeleton, &content, err);
	if (rc == SG_EMALFORMED)
		return sg_err_set(err, rc, "not an S/MIME encrypted object");
	if (rc < 0)
		return rc;
	if (!cms_shape(skeleton->data, skeleton->len, &shape)) {
		rc = sg_err_set(err, SG_EMALFORMED, "not an S/MIME encrypted object");
		goto out;
	}
	if (shape.type != NID_pkcs7_enveloped &&
	    shape.type != NID_id_smime_ct_authEnvelopedData) {
		rc = sg_err_set(err, SG_EMALFORMED, "not enveloped data");
		goto out;
	}
	rc = check_shape(&shape, allow_3des, &info->aead, err);
	if (rc < 0)
		goto out;
	info->cipher = OBJ_nid2sn(shape.cipher);
	if (nrcpts == 0) {
		rc = sg_err_set(err, SG_ENOKEY, "no recipient");
		goto out;
	}
	/* Every envelope recipient must read it with their own key, and all
	 * must read the same: the first one's plaintext is kept. */
	rc = decrypt_as(ks, skeleton, &content, rcpts[0], out, first, info->fpr,
	    err);
	for (size_t i = 1; rc == 0 && i < nrcpts; i++) {
		rc = decrypt_as(ks, skeleton, &content, rcpts[i], NULL, other, fpr,
		    err);
		if (rc == 0 && CRYPTO_memcmp(first, other, sizeof(first)) != 0)
			rc = sg_err_set(err, SG_ENOKEY, "recipients would read "
			    "different messages");
	}
out:
	g_byte_array_free(skeleton, TRUE);
	ERR_clear_error();
	return rc;
}
