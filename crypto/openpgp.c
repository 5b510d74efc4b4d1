/* OpenPGP with GPGME: set-up, contexts, key lookups from the snapshot,
 * encryption and signing of a message; see include/sealgate/openpgp.h.
 * The keyring's administration is in openpgp_keys.c. */
#include <errno.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <gpgme.h>

#include "keyindex.h"
#include "openpgp_int.h"

static const char *gpgme_version_str;
static char engine_version_str[64] = "unknown";

/* The GnuPG home set as GPGME's process-wide default: contexts for it need
 * no gpgme_ctx_set_engine_info, which would run `gpg --version` each time. */
static GMutex home_lock;
static char *default_home;

/* SEALGATE_OPENPGP_ENGINE=gpg at start-up: no encryption with rnp. */
static bool rnp_off;

int
sg_pgp_fail(struct sg_err *err, const char *what, gpgme_error_t gerr)
{
	char buf[256];

	gpgme_strerror_r(gerr, buf, sizeof(buf));
	return sg_err_set(err, SG_ECRYPTO, "%s: %s", what, buf);
}

int
sg_openpgp_init(struct sg_err *err)
{
	const char *engine = getenv("SEALGATE_OPENPGP_ENGINE");
	gpgme_engine_info_t info;
	gpgme_error_t gerr;

	rnp_off = engine != NULL && strcmp(engine, "gpg") == 0;
	gpgme_version_str = gpgme_check_version(NULL);
	if (gpgme_version_str == NULL)
		return sg_err_set(err, SG_ECRYPTO, "GPGME initialisation failed");
	gpgme_set_locale(NULL, LC_CTYPE, setlocale(LC_CTYPE, NULL));
	gerr = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP);
	if (gerr)
		return sg_pgp_fail(err, "gpg engine not usable", gerr);
	if (gpgme_get_engine_info(&info) == 0) {
		for (; info != NULL; info = info->next)
			if (info->protocol == GPGME_PROTOCOL_OpenPGP &&
			    info->version != NULL)
				g_strlcpy(engine_version_str, info->version,
				    sizeof(engine_version_str));
	}
	return SG_OK;
}

const char *
sg_openpgp_gpgme_version(void)
{
	return gpgme_version_str ? gpgme_version_str : gpgme_check_version(NULL);
}

const char *
sg_openpgp_engine_version(void)
{
	return engine_version_str;
}

static bool use_default_home(const char *home);

/* A context on home (NULL: GPGME's default), offline. */
static int
new_ctx(const char *home, gpgme_ctx_t *out, struct sg_err *err)
{
	gpgme_ctx_t ctx;
	gpgme_error_t gerr;

	gerr = gpgme_new(&ctx);
	if (gerr)
		return sg_pgp_fail(err, "gpgme_new", gerr);
	gerr = gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP);
	if (!gerr && home != NULL)
		gerr = gpgme_ctx_set_engine_info(ctx, GPGME_PROTOCOL_OpenPGP,
		    NULL, home);
	if (gerr) {
		gpgme_release(ctx);
		return sg_pgp_fail(err, "cannot use the GnuPG home", gerr);
	}
	gpgme_set_offline(ctx, 1);
	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL);
	*out = ctx;
	return SG_OK;
}

int
sg_pgp_ctx(const struct sg_keystore *ks, gpgme_ctx_t *out, struct sg_err *err)
{
	/* A new context copies the default engine info: set it first. */
	return new_ctx(use_default_home(ks->gnupg_home) ? NULL : ks->gnupg_home,
	    out, err);
}

int
sg_pgp_ctx_at(const char *home, gpgme_ctx_t *out, struct sg_err *err)
{
	int rc = new_ctx(home, out, err);

	if (rc == 0)
		gpgme_set_pinentry_mode(*out, GPGME_PINENTRY_MODE_LOOPBACK);
	return rc;
}

/* Makes home GPGME's default for new contexts when nothing else is. */
static bool
use_default_home(const char *home)
{
	bool ok;

	g_mutex_lock(&home_lock);
	if (default_home == NULL &&
	    gpgme_set_engine_info(GPGME_PROTOCOL_OpenPGP, NULL, home) == 0)
		default_home = g_strdup(home);
	ok = default_home != NULL && strcmp(default_home, home) == 0;
	g_mutex_unlock(&home_lock);
	return ok;
}

bool
sg_pgp_key_usable(gpgme_key_t key)
{
	return !key->revoked && !key->expired && !key->disabled &&
	    !key->invalid;
}

bool
sg_pgp_uid_matches(gpgme_key_t key, const char *addr)
{
	for (gpgme_user_id_t uid = key->uids; uid != NULL; uid = uid->next) {
		if (uid->revoked || uid->invalid || uid->email == NULL)
			continue;
		if (g_ascii_strcasecmp(uid->email, addr) == 0)
			return true;
	}
	return false;
}

/* Addresses become gpg search patterns: refuse anything odd. */
bool
sg_pgp_addr_ok(const char *addr)
{
	if (*addr == '\0' || strlen(addr) > 254 || strchr(addr, '@') == NULL)
		return false;
	for (const char *p = addr; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' ||
		    (unsigned char)*p == 0x7f)
			return false;
	return true;
}

/* The lookups answer from the snapshot's index: no gpg process. */
static int
find_indexed(const struct sg_keystore *ks, const char *addr, bool sign,
	     char fpr[SG_FPR_MAX], struct sg_err *err)
{
	if (ks->index == NULL)
		return sg_err_set(err, SG_EKEYSTORE, "key lookup on a keystore "
		    "that is not a snapshot");
	return sg_keyindex_find_pgp(ks->index, addr, sign, fpr, err);
}

int
sg_openpgp_find_key(const struct sg_keystore *ks, const char *addr,
		    char fpr[SG_FPR_MAX], struct sg_err *err)
{
	return find_indexed(ks, addr, false, fpr, err);
}

int
sg_openpgp_find_signing_key(const struct sg_keystore *ks, const char *addr,
			    char fpr[SG_FPR_MAX], struct sg_err *err)
{
	return find_indexed(ks, addr, true, fpr, err);
}

/* GPGME data callbacks over sg_reader / sg_writer. */
ssize_t
sg_pgp_cb_read(void *handle, void *buf, size_t len)
{
	struct sg_reader *r = handle;
	size_t n;

	if (r->read(r->ctx, buf, len, &n) < 0) {
		errno = EIO;
		return -1;
	}
	return (ssize_t)n;
}

ssize_t
sg_pgp_cb_write(void *handle, const void *buf, size_t len)
{
	struct sg_writer *w = handle;

	if (w->write(w->ctx, buf, len) < 0) {
		errno = EIO;
		return -1;
	}
	return (ssize_t)len;
}

/* The recipients as GPGME's recipient string, one fingerprint a line:
 * gpg is asked for the keys by fingerprint in the encryption run itself
 * (a key that is gone or unusable by then makes it fail). (transfer full) */
static int
recipient_string(const char *const *fprs, size_t n, char **out,
		 struct sg_err *err)
{
	GString *s = g_string_new(NULL);

	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(fprs[i]);

		if (len < 32 || strspn(fprs[i], "0123456789ABCDEFabcdef") != len) {
			g_string_free(s, TRUE);
			return sg_err_set(err, SG_EINVAL, "not a key fingerprint: "
			    "%s", fprs[i]);
		}
		g_string_append_printf(s, "%s\n", fprs[i]);
	}
	*out = g_string_free(s, FALSE);
	return SG_OK;
}

/* Adds the signing key; the key must be a usable secret key. */
static int
add_signer(gpgme_ctx_t ctx, const char *signer, struct sg_err *err)
{
	gpgme_key_t key = NULL;
	gpgme_error_t gerr;

	gerr = gpgme_get_key(ctx, signer, &key, 1);
	if (gerr)
		return sg_pgp_fail(err, "signing key vanished", gerr);
	gerr = gpgme_signers_add(ctx, key);
	gpgme_key_unref(key);
	if (gerr)
		return sg_pgp_fail(err, "cannot use the signing key", gerr);
	/* Never ask for a passphrase: a protected key fails. */
	gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_LOOPBACK);
	return SG_OK;
}

int
sg_openpgp_encrypt(const struct sg_keystore *ks, const char *const *fprs,
		   size_t nfprs, const char *signer, int flags,
		   struct sg_reader *in, struct sg_writer *out,
		   struct sg_openpgp_enc *info, struct sg_err *err)
{
	struct gpgme_data_cbs in_cbs = { .read = sg_pgp_cb_read };
	struct gpgme_data_cbs out_cbs = { .write = sg_pgp_cb_write };
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t plain = NULL, cipher = NULL;
	char *recipients = NULL;
	gpgme_encrypt_result_t res;
	gpgme_encrypt_flags_t eflags;
	gpgme_error_t gerr;
	struct sg_openpgp_enc unused;
	int rc;

	if (info == NULL)
		info = &unused;
	memset(info, 0, sizeof(*info));
	info->engine = "gpg";
	rc = recipient_string(fprs, nfprs, &recipients, err);
	/* rnp 0.16 cannot hide key ids (throw-keyids) nor sign here. */
	if (rc == 0 && !rnp_off && signer == NULL &&
	    !(flags & SG_PGP_HIDE_RECIPIENTS) && ks->index != NULL) {
		struct sg_err why = { 0 };

		rc = sg_pgp_rnp_encrypt(ks, fprs, nfprs, in, out, &info->cipher,
		    &why, err);
		if (rc == 0)
			info->engine = "rnp";
		if (rc != SG_ENOKEY)
			goto out;
		/* Nothing was written: gpg encrypts instead. */
		g_strlcpy(info->fallback, why.msg, sizeof(info->fallback));
		rc = SG_OK;
	}
	if (rc == 0)
		rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0)
		goto out;
	gpgme_set_armor(ctx, 1);
	if (signer != NULL)
		rc = add_signer(ctx, signer, err);
	if (rc < 0)
		goto out;
	if (gpgme_data_new_from_cbs(&plain, &in_cbs, in) ||
	    gpgme_data_new_from_cbs(&cipher, &out_cbs, out)) {
		rc = sg_err_set(err, SG_ENOMEM, "gpgme data setup failed");
		goto out;
	}
	/* Trust comes from the administrator's import, not the web of trust. */
	eflags = GPGME_ENCRYPT_ALWAYS_TRUST | GPGME_ENCRYPT_NO_ENCRYPT_TO;
	if (flags & SG_PGP_HIDE_RECIPIENTS)
		eflags |= GPGME_ENCRYPT_THROW_KEYIDS;
	if (signer != NULL)
		gerr = gpgme_op_encrypt_sign_ext(ctx, NULL, recipients, eflags,
		    plain, cipher);
	else
		gerr = gpgme_op_encrypt_ext(ctx, NULL, recipients, eflags, plain,
		    cipher);
	res = gpgme_op_encrypt_result(ctx);
	if (res != NULL && res->invalid_recipients != NULL) {
		char buf[128];

		gpgme_strerror_r(res->invalid_recipients->reason, buf, sizeof(buf));
		/* The fingerprint came from the snapshot. */
		rc = sg_err_set(err, SG_ECRYPTO, "recipient %s refused: %s%s",
		    res->invalid_recipients->fpr ? res->invalid_recipients->fpr
		    : "?", buf, gpg_err_code(res->invalid_recipients->reason) ==
		    GPG_ERR_NO_PUBKEY && ks->index != NULL ? ", though the "
		    "keystore snapshot holds it: the keystore cannot be read or "
		    "has just changed" : "");
		goto out;
	}
	if (gerr) {
		rc = sg_pgp_fail(err, "encryption failed", gerr);
		goto out;
	}
out:
	gpgme_data_release(plain);
	gpgme_data_release(cipher);
	g_free(recipients);
	if (ctx != NULL)
		gpgme_release(ctx);
	return rc;
}

int
sg_openpgp_sign(const struct sg_keystore *ks, const char *signer,
		struct sg_reader *in, struct sg_writer *out,
		char *micalg, size_t micalg_len, struct sg_err *err)
{
	struct gpgme_data_cbs in_cbs = { .read = sg_pgp_cb_read };
	struct gpgme_data_cbs out_cbs = { .write = sg_pgp_cb_write };
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t plain = NULL, sig = NULL;
	gpgme_sign_result_t res;
	gpgme_error_t gerr;
	const char *hash;
	int rc;

	rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0)
		return rc;
	gpgme_set_armor(ctx, 1);
	rc = add_signer(ctx, signer, err);
	if (rc < 0)
		goto out;
	if (gpgme_data_new_from_cbs(&plain, &in_cbs, in) ||
	    gpgme_data_new_from_cbs(&sig, &out_cbs, out)) {
		rc = sg_err_set(err, SG_ENOMEM, "gpgme data setup failed");
		goto out;
	}
	gerr = gpgme_op_sign(ctx, plain, sig, GPGME_SIG_MODE_DETACH);
	res = gpgme_op_sign_result(ctx);
	if (gerr || res == NULL || res->signatures == NULL ||
	    res->invalid_signers != NULL) {
		rc = sg_pgp_fail(err, "signing failed", gerr ? gerr
		    : GPG_ERR_GENERAL);
		goto out;
	}
	hash = gpgme_hash_algo_name(res->signatures->hash_algo);
	snprintf(micalg, micalg_len, "pgp-%s", hash ? hash : "sha256");
	for (char *p = micalg; *p; p++)
		*p = g_ascii_tolower(*p);
out:
	gpgme_data_release(plain);
	gpgme_data_release(sig);
	gpgme_release(ctx);
	return rc;
}
