/* Inbound S/MIME decryption: the content-encryption algorithm is checked
 * against an allow-list before anything is decrypted, and only the key of
 * an envelope recipient is used. */
#include <string.h>

#include <glib.h>
#include <openssl/asn1.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "smime_int.h"

/* A cursor over DER/BER. */
struct der {
	const unsigned char *p, *end;
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

static bool
der_enter(struct der *d, int want_tag, int want_cls)
{
	int tag, cls;
	long len;
	bool c, i;

	return der_header(d, &tag, &cls, &len, &c, &i) && c && tag == want_tag &&
	    cls == want_cls;
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

/* The content type and content-encryption algorithm of an enveloped or
 * authEnveloped CMS object, read from the DER without decrypting. */
static bool
cms_algorithms(const unsigned char *der, size_t len, int *type, int *cipher)
{
	struct der d = { der, der + len };
	int tag, cls;
	long l;
	bool c, i;

	if (!der_enter(&d, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL))
		return false;
	*type = der_oid(&d);
	if (!der_enter(&d, 0, V_ASN1_CONTEXT_SPECIFIC) ||
	    !der_enter(&d, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL) ||
	    !der_skip(&d))                      /* version */
		return false;
	/* Optional originatorInfo [0], then the recipientInfos SET. */
	if (!der_header(&d, &tag, &cls, &l, &c, &i))
		return false;
	if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 0) {
		if (!der_skip_body(&d, l, c, i, 0) ||
		    !der_header(&d, &tag, &cls, &l, &c, &i))
			return false;
	}
	if (tag != V_ASN1_SET || !der_skip_body(&d, l, c, i, 0))
		return false;
	if (!der_enter(&d, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL) || /* contentInfo */
	    der_oid(&d) == NID_undef ||
	    !der_enter(&d, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL))   /* algorithm */
		return false;
	*cipher = der_oid(&d);
	return *cipher != NID_undef;
}

/* The allow-list: AES in GCM (integrity) or CBC (none); 3DES by policy. */
static int
check_cipher(int nid, bool allow_3des, const char **integrity,
	     struct sg_err *err)
{
	switch (nid) {
	case NID_aes_128_gcm:
	case NID_aes_192_gcm:
	case NID_aes_256_gcm:
		*integrity = "aead";
		return SG_OK;
	case NID_aes_128_cbc:
	case NID_aes_192_cbc:
	case NID_aes_256_cbc:
		*integrity = "none";
		return SG_OK;
	case NID_des_ede3_cbc:
		if (allow_3des) {
			*integrity = "none";
			return SG_OK;
		}
		break;
	default:
		break;
	}
	return sg_err_set(err, SG_ECIPHER, "content encryption %s is not allowed",
	    nid == NID_undef ? "unknown" : OBJ_nid2sn(nid));
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
		char *name, *path;
		bool has_key;

		if (!sg_x509_has_email(c, addr) || !addressed_to(cms, c))
			continue;
		sg_x509_fpr(c, fpr);
		name = g_strdup_printf("%s.pem", fpr);
		path = sg_keystore_smime_path(ks, "keys", name);
		has_key = g_file_test(path, G_FILE_TEST_EXISTS);
		g_free(name);
		g_free(path);
		if (has_key) {
			X509_up_ref(c);
			found = c;
		}
	}
	sk_X509_pop_free(certs, X509_free);
	ERR_clear_error();
	return found;
}

int
sg_smime_decrypt(const struct sg_keystore *ks, const void *der, size_t len,
		 const char *const *rcpts, size_t nrcpts, bool allow_3des,
		 struct sg_writer *out, struct sg_smime_decrypted *info,
		 struct sg_err *err)
{
	const unsigned char *q = der;
	CMS_ContentInfo *cms = NULL;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	BIO *outb = NULL;
	int type = NID_undef, cipher = NID_undef, rc;

	memset(info, 0, sizeof(*info));
	if (!cms_algorithms(der, len, &type, &cipher))
		return sg_err_set(err, SG_EMALFORMED, "not an S/MIME encrypted object");
	if (type != NID_pkcs7_enveloped && type != NID_id_smime_ct_authEnvelopedData)
		return sg_err_set(err, SG_EMALFORMED, "not enveloped data");
	rc = check_cipher(cipher, allow_3des, &info->integrity, err);
	if (rc < 0)
		return rc;
	info->cipher = OBJ_nid2sn(cipher);
	cms = d2i_CMS_ContentInfo(NULL, &q, (long)len);
	if (cms == NULL) {
		rc = sg_ssl_fail(err, SG_EMALFORMED, "cannot read the CMS object");
		goto out;
	}
	/* Every envelope recipient must be able to read it with their own
	 * key; the first one's is used. */
	for (size_t i = 0; i < nrcpts; i++) {
		X509 *c = recipient_cert(ks, cms, rcpts[i], info->fpr);

		if (c == NULL) {
			rc = sg_err_set(err, SG_ENOKEY, "not encrypted to a key of %s",
			    rcpts[i]);
			goto out;
		}
		if (cert == NULL)
			cert = c;
		else
			X509_free(c);
	}
	if (cert == NULL) {
		rc = sg_err_set(err, SG_ENOKEY, "no recipient");
		goto out;
	}
	sg_x509_fpr(cert, info->fpr);
	key = load_key(ks, info->fpr);
	outb = sg_bio_writer(out);
	if (key == NULL || outb == NULL) {
		rc = sg_err_set(err, SG_ENOKEY, "private key unreadable");
		goto out;
	}
	if (CMS_decrypt(cms, key, cert, NULL, outb, CMS_BINARY) != 1)
		rc = sg_ssl_fail(err, SG_EINTEGRITY, "decryption failed");
out:
	BIO_free(outb);
	EVP_PKEY_free(key);
	X509_free(cert);
	CMS_ContentInfo_free(cms);
	ERR_clear_error();
	return rc;
}
