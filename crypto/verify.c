/* Signature verification for inbound mail: OpenPGP with GPGME, S/MIME with
 * OpenSSL CMS. Only says what it found; the caller compares the signer
 * with the From address. */
#define _DEFAULT_SOURCE /* timegm */
#include <string.h>

#include <glib.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "openpgp_int.h"
#include "sealgate/verify.h"
#include "smime_int.h"

void
sg_sig_init(struct sg_sig *sig)
{
	memset(sig, 0, sizeof(*sig));
	sig->addrs = g_ptr_array_new_with_free_func(g_free);
}

void
sg_sig_clear(struct sg_sig *sig)
{
	if (sig->addrs != NULL)
		g_ptr_array_free(sig->addrs, TRUE);
	memset(sig, 0, sizeof(*sig));
}

const char *
sg_sig_status_name(enum sg_sig_status s)
{
	switch (s) {
	case SG_SIG_VALID:		return "valid";
	case SG_SIG_INVALID:		return "invalid";
	case SG_SIG_EXPIRED:		return "expired";
	case SG_SIG_REVOKED:		return "revoked";
	case SG_SIG_UNKNOWN_KEY:	return "unknown-key";
	case SG_SIG_SIGNER_MISMATCH:	return "signer-mismatch";
	default:			return "none";
	}
}

/* The addresses of the key that made signature s. */
static void
openpgp_signer(gpgme_ctx_t ctx, gpgme_signature_t s, struct sg_sig *out)
{
	gpgme_key_t key = NULL;

	if (s->fpr == NULL || gpgme_get_key(ctx, s->fpr, &key, 0) != 0)
		return;
	if (key->fpr != NULL)
		g_strlcpy(out->fpr, key->fpr, sizeof(out->fpr));
	for (gpgme_user_id_t uid = key->uids; uid != NULL; uid = uid->next)
		if (!uid->revoked && !uid->invalid && uid->email && *uid->email)
			g_ptr_array_add(out->addrs, g_strdup(uid->email));
	gpgme_key_unref(key);
}

int
sg_openpgp_verify(const struct sg_keystore *ks, struct sg_reader *data,
		  const void *sig, size_t sig_len, struct sg_sig *out,
		  struct sg_err *err)
{
	struct gpgme_data_cbs text_cbs = { .read = sg_pgp_cb_read };
	gpgme_ctx_t ctx;
	gpgme_data_t dsig = NULL, dtext = NULL;
	gpgme_verify_result_t res;
	gpgme_signature_t s;
	int rc;

	rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0)
		return rc;
	if (gpgme_data_new_from_mem(&dsig, sig, sig_len, 0) ||
	    gpgme_data_new_from_cbs(&dtext, &text_cbs, data)) {
		rc = sg_err_set(err, SG_ENOMEM, "gpgme data setup failed");
		goto out;
	}
	gpgme_op_verify(ctx, dsig, dtext, NULL);
	res = gpgme_op_verify_result(ctx);
	s = res != NULL ? res->signatures : NULL;
	if (s == NULL) {
		out->status = SG_SIG_INVALID;
		g_strlcpy(out->reason, "no signature", sizeof(out->reason));
		goto out;
	}
	sg_openpgp_sig_result(ctx, s, out);
out:
	gpgme_data_release(dsig);
	gpgme_data_release(dtext);
	gpgme_release(ctx);
	return rc;
}

void
sg_openpgp_sig_result(gpgme_ctx_t ctx, gpgme_signature_t s, struct sg_sig *out)
{
	openpgp_signer(ctx, s, out);
	if (s->summary & GPGME_SIGSUM_KEY_REVOKED)
		out->status = SG_SIG_REVOKED;
	else if (s->summary & (GPGME_SIGSUM_KEY_EXPIRED | GPGME_SIGSUM_SIG_EXPIRED))
		out->status = SG_SIG_EXPIRED;
	else if (gpg_err_code(s->status) == GPG_ERR_NO_PUBKEY)
		out->status = SG_SIG_UNKNOWN_KEY;
	else if (gpg_err_code(s->status) != GPG_ERR_NO_ERROR)
		out->status = SG_SIG_INVALID;
	else
		out->status = SG_SIG_VALID;
	if (out->status != SG_SIG_VALID)
		gpgme_strerror_r(s->status, out->reason, sizeof(out->reason));
	if (s->fpr != NULL && out->fpr[0] == '\0')
		g_strlcpy(out->fpr, s->fpr, sizeof(out->fpr));
	out->created = (time_t)s->timestamp;
}

/* The signingTime signed attribute of si (UTCTime or GeneralizedTime),
 * or 0 when it is absent or unreadable. */
static time_t
signing_time(CMS_SignerInfo *si)
{
	int i = CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, -1);
	X509_ATTRIBUTE *attr = i >= 0 ? CMS_signed_get_attr(si, i) : NULL;
	ASN1_TYPE *t;
	struct tm tm;

	/* Exactly one value (RFC 5652, 11.3), and only one such attribute. */
	if (attr == NULL || X509_ATTRIBUTE_count(attr) != 1 ||
	    CMS_signed_get_attr_by_NID(si, NID_pkcs9_signingTime, i) >= 0)
		return 0;
	t = X509_ATTRIBUTE_get0_type(attr, 0);
	if (t == NULL || (t->type != V_ASN1_UTCTIME &&
	    t->type != V_ASN1_GENERALIZEDTIME) ||
	    ASN1_TIME_to_tm((ASN1_TIME *)t->value.asn1_string, &tm) != 1)
		return 0;
	return timegm(&tm);
}

static X509_STORE *
trust_store(const struct sg_keystore *ks)
{
	STACK_OF(X509) *anchors = sg_smime_load_dir(ks, "anchors");
	X509_STORE *store = X509_STORE_new();

	for (int i = 0; i < sk_X509_num(anchors); i++)
		X509_STORE_add_cert(store, sk_X509_value(anchors, i));
	X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	X509_STORE_set_purpose(store, X509_PURPOSE_SMIME_SIGN);
	sk_X509_pop_free(anchors, X509_free);
	return store;
}

/* Why the signer's certificate does not verify, as a status. */
static enum sg_sig_status
chain_status(const struct sg_keystore *ks, X509 *signer, STACK_OF(X509) *extra,
	     char *reason, size_t len)
{
	X509_STORE *store = trust_store(ks);
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *pool = sg_smime_load_dir(ks, "certs");
	enum sg_sig_status st = SG_SIG_VALID;
	int e;

	for (int i = 0; extra != NULL && i < sk_X509_num(extra); i++) {
		X509_up_ref(sk_X509_value(extra, i));
		sk_X509_push(pool, sk_X509_value(extra, i));
	}
	if (ctx == NULL || !X509_STORE_CTX_init(ctx, store, signer, pool)) {
		st = SG_SIG_UNKNOWN_KEY;
	} else if (X509_verify_cert(ctx) != 1) {
		e = X509_STORE_CTX_get_error(ctx);
		st = e == X509_V_ERR_CERT_HAS_EXPIRED ||
		    e == X509_V_ERR_CERT_NOT_YET_VALID ? SG_SIG_EXPIRED
		    : e == X509_V_ERR_CERT_REVOKED ? SG_SIG_REVOKED
		    : SG_SIG_UNKNOWN_KEY;
		g_strlcpy(reason, X509_verify_cert_error_string(e), len);
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(pool, X509_free);
	return st;
}

/* The signature in der over what data delivers (the content goes on to
 * content when that is not NULL). */
static void
verify_cms(const struct sg_keystore *ks, const void *der, size_t der_len,
	   struct sg_reader *data, struct sg_writer *content,
	   struct sg_sig *out)
{
	const unsigned char *q = der;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q, (long)der_len);
	BIO *dcont = NULL, *outb = NULL;
	STACK_OF(X509) *signers = NULL, *certs = NULL;
	STACK_OF(OPENSSL_STRING) *emails;
	CMS_SignerInfo *si;
	X509 *signer;

	if (cms == NULL || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		out->status = SG_SIG_INVALID;
		g_strlcpy(out->reason, "unreadable signature", sizeof(out->reason));
		goto out;
	}
	dcont = sg_bio_reader(data);
	if (content != NULL)
		outb = sg_bio_writer(content);
	if (dcont == NULL || (content != NULL && outb == NULL)) {
		out->status = SG_SIG_INVALID;
		g_strlcpy(out->reason, "out of memory", sizeof(out->reason));
		goto out;
	}
	/* The signature itself first: math only, no chain. */
	if (CMS_verify(cms, NULL, NULL, dcont, outb, CMS_BINARY |
	    CMS_NO_SIGNER_CERT_VERIFY) != 1) {
		bool no_cert = ERR_GET_REASON(ERR_peek_last_error()) ==
		    CMS_R_SIGNER_CERTIFICATE_NOT_FOUND;

		out->status = no_cert ? SG_SIG_UNKNOWN_KEY : SG_SIG_INVALID;
		g_strlcpy(out->reason, no_cert ? "signer certificate not included"
		    : "signature does not match the content", sizeof(out->reason));
		goto out;
	}
	signers = CMS_get0_signers(cms);
	if (sk_X509_num(signers) != 1) {
		out->status = SG_SIG_INVALID;
		g_strlcpy(out->reason, "not exactly one signer", sizeof(out->reason));
		goto out;
	}
	signer = sk_X509_value(signers, 0);
	si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
	out->created = signing_time(si);
	out->has_smime_caps = sg_smime_caps_announced(si, &out->smime_caps);
	sg_x509_fpr(signer, out->fpr);
	emails = X509_get1_email(signer);
	for (int i = 0; i < sk_OPENSSL_STRING_num(emails); i++)
		g_ptr_array_add(out->addrs, g_strdup(sk_OPENSSL_STRING_value(emails, i)));
	X509_email_free(emails);
	certs = CMS_get1_certs(cms);
	out->status = chain_status(ks, signer, certs, out->reason,
	    sizeof(out->reason));
out:
	sk_X509_free(signers);
	sk_X509_pop_free(certs, X509_free);
	BIO_free(dcont);
	BIO_free(outb);
	CMS_ContentInfo_free(cms);
	ERR_clear_error();
}

int
sg_smime_verify(const struct sg_keystore *ks, const void *der, size_t der_len,
		struct sg_reader *data, struct sg_sig *out, struct sg_err *err)
{
	(void)err;
	verify_cms(ks, der, der_len, data, NULL, out);
	return SG_OK;
}

int
sg_smime_verify_opaque(const struct sg_keystore *ks,
		       const struct sg_source *der,
		       struct sg_writer *content, struct sg_sig *out,
		       struct sg_err *err)
{
	struct sg_cms_content where;
	struct sg_cms_reader *r;
	struct sg_reader data = { sg_cms_reader_read, NULL };
	GByteArray *skeleton = NULL;
	int rc;

	/* The signature is checked over the content as it is read from the
	 * source: the skeleton, as detached signed-data. */
	rc = sg_cms_split(der, true, &skeleton, &where, err);
	if (rc == SG_EMALFORMED) {
		out->status = SG_SIG_INVALID;
		g_strlcpy(out->reason, "unreadable signature", sizeof(out->reason));
		return SG_OK;
	}
	if (rc < 0)
		return rc;
	r = sg_cms_reader_new(&where);
	data.ctx = r;
	verify_cms(ks, skeleton->data, skeleton->len, &data, content, out);
	sg_cms_reader_free(r);
	g_byte_array_free(skeleton, TRUE);
	return SG_OK;
}
