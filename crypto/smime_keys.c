/* The S/MIME part of the keystore's administration: the listing, export
 * and removal of certificates and keys; see include/sealgate/smime.h.
 * Import is in smime_import.c, the per-message operations in smime.c. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "keyindex.h"
#include "smime_int.h"

/* Every address of a certificate: SAN rfc822Names, else subject emails. */
static GPtrArray *
cert_addresses(X509 *cert)
{
	GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
	STACK_OF(OPENSSL_STRING) *emails = X509_get1_email(cert);

	for (int i = 0; i < sk_OPENSSL_STRING_num(emails); i++) {
		const char *e = sk_OPENSSL_STRING_value(emails, i);
		bool dup = false;

		for (guint j = 0; j < out->len; j++)
			dup |= g_ascii_strcasecmp(g_ptr_array_index(out, j), e) == 0;
		if (!dup)
			g_ptr_array_add(out, g_strdup(e));
	}
	X509_email_free(emails);
	return out;
}

static time_t
asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm = { 0 };

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

int
sg_smime_list(const struct sg_keystore *ks, const char *only,
	      sg_smime_list_cb cb, void *arg, struct sg_err *err)
{
	STACK_OF(X509) *certs = sg_smime_load_dir(ks, "certs");
	STACK_OF(X509) *anchors = sg_smime_load_dir(ks, "anchors");
	char buf[256];

	(void)err;
	for (int pass = 0; pass < 2; pass++) {
		STACK_OF(X509) *set = pass == 0 ? certs : anchors;

		for (int i = 0; i < sk_X509_num(set); i++) {
			X509 *cert = sk_X509_value(set, i);
			GPtrArray *addrs;
			char fpr[SG_FPR_MAX], *keyname, *keypath;
			struct sg_smime_identity id = { 0 };
			const char *why;

			sg_x509_fpr(cert, fpr);
			if (only != NULL && strcmp(only, fpr) != 0)
				continue;
			addrs = cert_addresses(cert);
			keyname = g_strdup_printf("%s.pem", fpr);
			keypath = sg_keystore_smime_path(ks, "keys", keyname);
			why = pass == 0 ? sg_smime_cert_unusable(ks, cert, anchors,
			    certs, buf, sizeof(buf)) : NULL;
			id.fpr = fpr;
			id.anchor = pass == 1;
			id.has_key = access(keypath, F_OK) == 0;
			id.expires = asn1_to_time(X509_get0_notAfter(cert));
			id.state = "active";
			if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
				id.state = "expired";
			else if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0)
				id.state = "not-yet-valid";
			else if (why != NULL)
				id.state = "unusable";
			id.why = why;
			if (addrs->len == 0) {
				id.addr = "-";
				if (pass == 1)
					cb(&id, arg);
			}
			for (guint j = 0; j < addrs->len; j++) {
				id.addr = g_ptr_array_index(addrs, j);
				cb(&id, arg);
			}
			g_free(keyname);
			g_free(keypath);
			g_ptr_array_free(addrs, TRUE);
		}
	}
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(anchors, X509_free);
	return SG_OK;
}

/* Certificates (not anchors) an administrator names: by address or by
 * fingerprint. */
static bool
named(X509 *cert, const char *fpr, const char *what)
{
	return strchr(what, '@') != NULL ? sg_x509_has_email(cert, what)
	    : g_ascii_strcasecmp(fpr, what) == 0;
}

int
sg_smime_export(const struct sg_keystore *ks, const char *what, bool secret,
		struct sg_writer *out, unsigned *count, struct sg_err *err)
{
	STACK_OF(X509) *certs = sg_smime_load_dir(ks, "certs");
	int rc = SG_OK;

	*count = 0;
	for (int i = 0; i < sk_X509_num(certs) && rc == 0; i++) {
		X509 *cert = sk_X509_value(certs, i);
		char fpr[SG_FPR_MAX], *data;
		BIO *pem = BIO_new(BIO_s_mem());
		EVP_PKEY *key;
		long len;

		sg_x509_fpr(cert, fpr);
		if (!named(cert, fpr, what)) {
			BIO_free(pem);
			continue;
		}
		PEM_write_bio_X509(pem, cert);
		if (secret && (key = sg_smime_load_key(ks, fpr)) != NULL) {
			PEM_write_bio_PrivateKey(pem, key, NULL, NULL, 0, NULL, NULL);
			EVP_PKEY_free(key);
		}
		len = BIO_get_mem_data(pem, &data);
		rc = out->write(out->ctx, data, (size_t)len);
		BIO_free(pem);
		(*count)++;
	}
	sk_X509_pop_free(certs, X509_free);
	(void)err;
	return rc;
}

static int
remove_matching(const struct sg_keystore *ks, const char *what,
		unsigned *count, struct sg_err *err)
{
	static const char *const subs[] = { "certs", "keys", "anchors" };
	STACK_OF(X509) *certs = sg_smime_load_dir(ks, "certs");
	STACK_OF(X509) *anchors = sg_smime_load_dir(ks, "anchors");
	int rc = SG_OK;

	*count = 0;
	for (int set = 0; set < 2; set++) {
		STACK_OF(X509) *list = set == 0 ? certs : anchors;

		for (int i = 0; i < sk_X509_num(list) && rc == 0; i++) {
			X509 *cert = sk_X509_value(list, i);
			char fpr[SG_FPR_MAX], *name;

			sg_x509_fpr(cert, fpr);
			/* Anchors go by fingerprint only. */
			if (set == 1 ? g_ascii_strcasecmp(fpr, what) != 0
			    : !named(cert, fpr, what))
				continue;
			name = g_strdup_printf("%s.pem", fpr);
			for (size_t s = 0; s < G_N_ELEMENTS(subs); s++) {
				char *path = sg_keystore_smime_path(ks, subs[s], name);

				if (unlink(path) < 0 && errno != ENOENT)
					rc = sg_err_set(err, SG_EIO, "cannot remove %s: %s",
					    path, strerror(errno));
				g_free(path);
			}
			g_free(name);
			(*count)++;
		}
	}
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(anchors, X509_free);
	return rc;
}

int
sg_smime_staged(const struct sg_keystore *ks, sg_smime_change change,
		void *arg, struct sg_err *err)
{
	struct sg_keystore staged = *ks;
	bool changed = false;
	char *copy;
	int rc;

	rc = sg_keystore_stage_begin(ks->smime_dir, &copy, err);
	if (rc < 0)
		return rc;
	staged.smime_dir = copy;
	rc = change(&staged, arg, &changed, err);
	if (rc == 0 && changed)
		return sg_keystore_stage_commit(ks->smime_dir, copy, err);
	sg_keystore_stage_abort(copy);
	return rc;
}

struct removal {
	const char *what;
	unsigned count;
};

static int
remove_staged(const struct sg_keystore *staged, void *arg, bool *changed,
	      struct sg_err *err)
{
	struct removal *r = arg;
	int rc = remove_matching(staged, r->what, &r->count, err);

	*changed = r->count > 0;
	return rc;
}

int
sg_smime_remove(const struct sg_keystore *ks, const char *what,
		unsigned *count, struct sg_err *err)
{
	/* On a copy, so that a certificate never goes without its key. */
	struct removal r = { what, 0 };
	int rc = sg_smime_staged(ks, remove_staged, &r, err);

	*count = rc == 0 ? r.count : 0;
	return rc;
}
