/* The OpenPGP keyring's administration with GPGME: what a key file
 * holds and whether it is taken (check, import), and the listing, export
 * and removal of keys; see include/sealgate/openpgp.h. The per-message
 * operations are in openpgp.c. */
#include <string.h>

#include <glib.h>
#include <gpgme.h>

#include "openpgp_int.h"

/* Creation time of the newest usable encryption subkey, 0 if none. */
static long
best_encryption_subkey(gpgme_key_t key)
{
	long best = 0;

	for (gpgme_subkey_t sk = key->subkeys; sk != NULL; sk = sk->next) {
		if (!sk->can_encrypt || sk->revoked || sk->expired ||
		    sk->disabled || sk->invalid)
			continue;
		if (sk->timestamp > best)
			best = sk->timestamp;
	}
	return best;
}

#define MIN_RSA_BITS 2048

static bool
is_rsa(gpgme_subkey_t sk)
{
	return sk->pubkey_algo == GPGME_PK_RSA || sk->pubkey_algo == GPGME_PK_RSA_E ||
	    sk->pubkey_algo == GPGME_PK_RSA_S;
}

/* Whether the file holds the secret part of an encryption-capable
 * (sub)key of key (listed with GPGME_KEYLIST_MODE_WITH_SECRET): what an
 * expired or revoked key needs to be of use. A stub without the secret
 * (gpg --export-secret-subkeys) or a smartcard's key does not count. */
static bool
secret_to_decrypt(gpgme_key_t key)
{
	for (gpgme_subkey_t sk = key->subkeys; sk != NULL; sk = sk->next)
		if (sk->can_encrypt && sk->secret && !sk->is_cardkey)
			return true;
	return false;
}

/* Whether a user id of key that is neither revoked itself nor invalid
 * names an internal address. */
static bool
internal_uid(gpgme_key_t key, const struct sg_internal *internal)
{
	for (gpgme_user_id_t u = key->uids; u != NULL; u = u->next)
		if (!u->revoked && !u->invalid && u->email != NULL &&
		    sg_internal_has(internal, u->email))
			return true;
	return false;
}

#define DECRYPT_ONLY_RULE "(an expired or revoked key is kept only to " \
	"decrypt for an internal address, with its secret key)"

/* Why a key in a file may not enter the keystore, or NULL. An expired or
 * revoked key enters to decrypt only: with its secret part, for a user id
 * with an internal address. */
static const char *
refused_key(gpgme_key_t key, const struct sg_internal *internal)
{
	unsigned uids = 0;
	bool enc = false;

	for (gpgme_user_id_t u = key->uids; u != NULL; u = u->next)
		uids++;
	if (uids > SG_PGP_MAX_UIDS)
		return "has more than " G_STRINGIFY(SG_PGP_MAX_UIDS) " user ids";
	for (gpgme_subkey_t sk = key->subkeys; sk != NULL; sk = sk->next) {
		if (is_rsa(sk) && sk->length < MIN_RSA_BITS)
			return "has an RSA key smaller than 2048 bits";
		enc |= sk->can_encrypt && !sk->revoked && !sk->expired &&
		    !sk->disabled && !sk->invalid;
	}
	if (key->revoked || key->expired) {
		if (!secret_to_decrypt(key))
			return key->revoked ? "is revoked, and the file holds no "
			    "secret key of it that decrypts " DECRYPT_ONLY_RULE
			    : "has expired, and the file holds no secret key of "
			    "it that decrypts " DECRYPT_ONLY_RULE;
		if (!internal_uid(key, internal))
			return key->revoked ? "is revoked, and none of its user "
			    "ids is an internal address " DECRYPT_ONLY_RULE
			    : "has expired, and none of its user ids is an "
			    "internal address " DECRYPT_ONLY_RULE;
		return NULL;
	}
	return enc ? NULL : "has no encryption-capable (sub)key";
}

/* gpg.conf of the throwaway home a file is checked in: offline, and user
 * ids listed as revoked only when they are themselves (see keystore.c). */
static const char check_conf[] =
	"no-auto-key-retrieve\n"
	"no-auto-key-import\n"
	"disable-dirmngr\n"
	"no-expensive-trust-checks\n";

/* sg_openpgp_check; with grips, the keygrips of the file's keys go there
 * (sg_pgp_grips_add). */
static int
check_file(const void *data, size_t len, const struct sg_internal *internal,
	   unsigned *keys, GHashTable *grips, struct sg_err *err)
{
	char *home = sg_pgp_make_home(SG_PGP_HOME_CHECK, err);
	char *conf;
	GHashTable *unseen;
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t dh = NULL;
	gpgme_key_t key;
	int rc;

	*keys = 0;
	if (home == NULL)
		return SG_EIO;
	unseen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	conf = g_build_filename(home, "gpg.conf", NULL);
	rc = g_file_set_contents(conf, check_conf, -1, NULL) ? SG_OK
	    : sg_err_set(err, SG_EIO, "cannot set up a GnuPG home");
	g_free(conf);
	if (rc == 0)
		rc = sg_pgp_ctx_at(home, &ctx, err);
	if (rc == 0 && gpgme_data_new_from_mem(&dh, data, len, 0))
		rc = sg_err_set(err, SG_ENOMEM, "out of memory");
	if (rc == 0)
		gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL |
		    GPGME_KEYLIST_MODE_WITH_KEYGRIP);
	/* Every key gpg read must be there as a key of its own: one whose
	 * key material another key of the file carries is merged into that
	 * one (its secret with it). */
	if (rc == 0 && gpgme_op_import(ctx, dh) == 0) {
		gpgme_import_result_t ir = gpgme_op_import_result(ctx);

		for (gpgme_import_status_t st = ir ? ir->imports : NULL; st;
		    st = st->next)
			if (st->fpr != NULL)
				g_hash_table_add(unseen, g_strdup(st->fpr));
		/* Which secret parts the file holds, when it holds any (the
		 * listing asks gpg-agent). */
		if (ir != NULL && ir->secret_read > 0)
			gpgme_set_keylist_mode(ctx, gpgme_get_keylist_mode(ctx) |
			    GPGME_KEYLIST_MODE_WITH_SECRET);
	}
	if (rc == 0 && !gpgme_op_keylist_start(ctx, NULL, 0)) {
		while (!gpgme_op_keylist_next(ctx, &key)) {
			const char *why = refused_key(key, internal);

			if (grips != NULL)
				sg_pgp_grips_add(grips, NULL, key);
			if (key->fpr != NULL)
				g_hash_table_remove(unseen, key->fpr);
			(*keys)++;
			if (why != NULL && rc == 0)
				rc = sg_err_set(err, SG_EINVAL, "key %s %s",
				    key->fpr ? key->fpr : "?", why);
			gpgme_key_unref(key);
		}
		gpgme_op_keylist_end(ctx);
	}
	if (rc == 0 && g_hash_table_size(unseen) > 0) {
		GHashTableIter it;
		gpointer fpr;

		g_hash_table_iter_init(&it, unseen);
		g_hash_table_iter_next(&it, &fpr, NULL);
		rc = sg_err_set(err, SG_EINVAL, "key %s shares key material "
		    "with another key of the file: a key may not carry another "
		    "key's (sub)key; nothing was imported", (char *)fpr);
	}
	g_hash_table_destroy(unseen);
	gpgme_data_release(dh);
	if (ctx != NULL)
		gpgme_release(ctx);
	sg_pgp_remove_home(home);
	g_free(home);
	return rc;
}

int
sg_openpgp_check(const void *data, size_t len,
		 const struct sg_internal *internal, unsigned *keys,
		 struct sg_err *err)
{
	return check_file(data, len, internal, keys, NULL, err);
}

int
sg_openpgp_import(const struct sg_keystore *ks, const void *data, size_t len,
		  const struct sg_internal *internal,
		  struct sg_openpgp_import *res, struct sg_err *err)
{
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t dh = NULL;
	GHashTable *grips;
	char *home;
	gpgme_import_result_t ir;
	gpgme_error_t gerr;
	GPtrArray *fprs;
	GArray *changed;
	int rc;

	memset(res, 0, sizeof(*res));
	/* Every key first, in a throwaway home: one bad key refuses the
	 * whole file, before the keystore changes. */
	grips = sg_pgp_grips_new();
	rc = check_file(data, len, internal, &res->considered, grips, err);
	/* Into a copy of the keyring, which replaces it only when complete. */
	if (rc == 0)
		rc = sg_keystore_stage_begin(ks->gnupg_home, &home, err);
	if (rc < 0) {
		g_hash_table_destroy(grips);
		return rc;
	}
	rc = sg_pgp_ctx_at(home, &ctx, err);
	if (rc < 0)
		goto out;
	gerr = gpgme_data_new_from_mem(&dh, data, len, 0);
	if (!gerr)
		gerr = gpgme_op_import(ctx, dh);
	if (gerr) {
		rc = sg_pgp_fail(err, "import failed", gerr);
		goto out;
	}
	ir = gpgme_op_import_result(ctx);
	if (ir != NULL && ir->considered == 0 && ir->new_revocations > 0) {
		/* A revocation certificate for a key that is already here. */
		res->revocations = (unsigned)ir->new_revocations;
		goto out;
	}
	if (ir == NULL || ir->considered == 0) {
		rc = sg_err_set(err, SG_EINVAL, "no OpenPGP key found");
		goto out;
	}
	res->considered = (unsigned)ir->considered;
	res->imported = (unsigned)ir->imported;
	res->unchanged = (unsigned)ir->unchanged;
	res->secret_imported = (unsigned)ir->secret_imported;
	res->revocations = (unsigned)ir->new_revocations;
	fprs = g_ptr_array_new();
	changed = g_array_new(FALSE, TRUE, sizeof(gboolean));
	for (gpgme_import_status_t st = ir->imports; st != NULL; st = st->next) {
		/* A secret key that was there already is reported with
		 * GPGME_IMPORT_SECRET alone. */
		gboolean is_new = (st->status & ~GPGME_IMPORT_SECRET) != 0;
		guint i;

		if (st->fpr == NULL || st->result != 0)
			continue;
		for (i = 0; i < fprs->len; i++)
			if (strcmp(g_ptr_array_index(fprs, i), st->fpr) == 0)
				break;
		if (i == fprs->len) {
			g_ptr_array_add(fprs, g_strdup(st->fpr));
			g_array_append_val(changed, is_new);
		} else if (is_new) {
			g_array_index(changed, gboolean, i) = TRUE;
		}
	}
	g_ptr_array_add(fprs, NULL);
	res->fprs = (char **)g_ptr_array_free(fprs, FALSE);
	res->changed = (int *)(void *)g_array_free(changed, FALSE);
	if (ir->not_imported > 0 && ir->imported == 0 && ir->unchanged == 0 &&
	    ir->secret_imported == 0 && ir->secret_unchanged == 0)
		rc = sg_err_set(err, SG_EINVAL, "no key could be imported");
	if (rc == 0)
		rc = sg_pgp_refuse_shared(ctx, grips, err);
out:
	g_hash_table_destroy(grips);
	gpgme_data_release(dh);
	if (ctx != NULL)
		gpgme_release(ctx);
	if (rc == 0)
		return sg_pgp_stage_commit(ks, home, err);
	sg_pgp_stage_abort(home);
	return rc;
}

void
sg_openpgp_import_clear(struct sg_openpgp_import *res)
{
	g_strfreev(res->fprs);
	g_free(res->changed);
	res->fprs = NULL;
	res->changed = NULL;
}

static const char *
key_state(gpgme_key_t key)
{
	if (key->revoked)
		return "revoked";
	if (key->expired)
		return "expired";
	if (key->disabled)
		return "disabled";
	if (key->invalid)
		return "invalid";
	return "active";
}

/* Expiry of the key: its primary key's, 0 when it never expires. */
static time_t
key_expiry(gpgme_key_t key)
{
	return key->subkeys != NULL ? (time_t)key->subkeys->expires : 0;
}

/* Whether the keystore holds the secret part of a (sub)key of key: its
 * file in private-keys-v1.d, which is what gpg-agent itself looks up.
 * Read from disk rather than asked of the agent, so that a listing never
 * depends on which agent answers on the home's socket, or whether one
 * can start. */
bool
sg_pgp_subkey_has_secret(const struct sg_keystore *ks, gpgme_subkey_t sk)
{
	char *name, *path;
	bool found;

	if (sk->keygrip == NULL || strlen(sk->keygrip) != 40 ||
	    strspn(sk->keygrip, "0123456789ABCDEF") != 40)
		return false;
	name = g_strconcat(sk->keygrip, ".key", NULL);
	path = g_build_filename(ks->gnupg_home, "private-keys-v1.d", name, NULL);
	found = g_file_test(path, G_FILE_TEST_IS_REGULAR);
	g_free(path);
	g_free(name);
	return found;
}

static bool
has_secret(const struct sg_keystore *ks, gpgme_key_t key, bool to_decrypt)
{
	for (gpgme_subkey_t sk = key->subkeys; sk != NULL; sk = sk->next) {
		if (to_decrypt && !sk->can_encrypt)
			continue;
		if (sg_pgp_subkey_has_secret(ks, sk))
			return true;
	}
	return false;
}

bool
sg_pgp_has_secret(const struct sg_keystore *ks, gpgme_key_t key)
{
	return has_secret(ks, key, false);
}

int
sg_pgp_each_key(const struct sg_keystore *ks, const char *pattern,
		sg_pgp_key_fn fn, void *arg, unsigned *count, struct sg_err *err)
{
	gpgme_ctx_t ctx;
	gpgme_key_t key;
	gpgme_error_t gerr;
	int rc;

	*count = 0;
	rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0)
		return rc;
	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL |
	    GPGME_KEYLIST_MODE_WITH_KEYGRIP);
	gerr = gpgme_op_keylist_start(ctx, pattern, 0);
	while (!gerr && !(gerr = gpgme_op_keylist_next(ctx, &key))) {
		(*count)++;
		fn(key, arg);
		gpgme_key_unref(key);
	}
	if (gpg_err_code(gerr) != GPG_ERR_EOF)
		rc = sg_pgp_fail(err, "key listing failed", gerr);
	gpgme_op_keylist_end(ctx);
	gpgme_release(ctx);
	return rc;
}

struct list_arg {
	const struct sg_keystore *ks;
	sg_openpgp_list_cb cb;
	void *arg;
};

/* What each user id serves its address for: an active key encrypts (with
 * a usable encryption subkey), decrypts and signs (with its secret part);
 * an expired or revoked one only decrypts (sg_openpgp_decryption_subkeys);
 * a revoked user id serves nothing. The keystore lists a user id as
 * revoked only when it is itself (see keystore.c). */
static void
list_identities(gpgme_key_t key, void *arg)
{
	struct list_arg *a = arg;
	bool secret = sg_pgp_has_secret(a->ks, key);
	bool active = sg_pgp_key_usable(key);
	bool decrypts = !key->disabled && !key->invalid &&
	    has_secret(a->ks, key, true);

	for (gpgme_user_id_t uid = key->uids; uid; uid = uid->next) {
		bool uid_ok = !uid->revoked && !uid->invalid;
		struct sg_openpgp_identity id = {
			.addr = uid->email,
			.fpr = key->fpr,
			.state = uid->revoked ? "revoked" : key_state(key),
			.expires = key_expiry(key),
			.can_encrypt = uid_ok && active && key->can_encrypt &&
			    best_encryption_subkey(key) != 0,
			.can_decrypt = uid_ok && (active ? secret : decrypts),
			.can_sign = uid_ok && active && secret,
			.secret = secret,
		};

		if (uid->email == NULL || *uid->email == '\0')
			continue;
		a->cb(&id, a->arg);
	}
}

int
sg_openpgp_list(const struct sg_keystore *ks, const char *pattern,
		sg_openpgp_list_cb cb, void *arg, struct sg_err *err)
{
	struct list_arg a = { ks, cb, arg };
	unsigned n;

	return sg_pgp_each_key(ks, pattern, list_identities, &a, &n, err);
}

/* The keys an administrator names: an address (its user ids) or a
 * fingerprint. */
static char *
admin_pattern(const char *what)
{
	return strchr(what, '@') != NULL ? g_strdup_printf("<%s>", what)
	    : g_strdup(what);
}

int
sg_openpgp_export(const struct sg_keystore *ks, const char *what, bool secret,
		  struct sg_writer *out, unsigned *count, struct sg_err *err)
{
	struct gpgme_data_cbs cbs = { .write = sg_pgp_cb_write };
	const char *patterns[2] = { NULL, NULL };
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t dh = NULL;
	gpgme_key_t key;
	char *pattern = admin_pattern(what);
	int rc;

	*count = 0;
	rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0)
		goto out;
	/* Count first: exporting nothing is not a success. */
	if (!gpgme_op_keylist_start(ctx, pattern, secret)) {
		while (!gpgme_op_keylist_next(ctx, &key)) {
			(*count)++;
			gpgme_key_unref(key);
		}
	}
	gpgme_op_keylist_end(ctx);
	if (*count == 0)
		goto out;
	patterns[0] = pattern;
	gpgme_set_armor(ctx, 1);
	gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_LOOPBACK);
	if (gpgme_data_new_from_cbs(&dh, &cbs, out) ||
	    gpgme_op_export_ext(ctx, patterns,
	    secret ? GPGME_EXPORT_MODE_SECRET : 0, dh))
		rc = sg_err_set(err, SG_ECRYPTO, "export failed");
out:
	gpgme_data_release(dh);
	if (ctx != NULL)
		gpgme_release(ctx);
	g_free(pattern);
	return rc;
}

int
sg_openpgp_remove(const struct sg_keystore *ks, const char *what,
		  unsigned *count, struct sg_err *err)
{
	gpgme_ctx_t ctx = NULL;
	gpgme_key_t key;
	GPtrArray *keys = g_ptr_array_new();
	char *pattern = admin_pattern(what);
	char *home = NULL;
	gpgme_error_t gerr;
	int rc;

	*count = 0;
	/* On a copy of the keyring, so that a key never loses its secret
	 * part without its public part, nor one key of several goes alone. */
	rc = sg_keystore_stage_begin(ks->gnupg_home, &home, err);
	if (rc == 0)
		rc = sg_pgp_ctx_at(home, &ctx, err);
	if (rc < 0)
		goto out;
	if (!gpgme_op_keylist_start(ctx, pattern, 0))
		while (!gpgme_op_keylist_next(ctx, &key))
			g_ptr_array_add(keys, key);
	gpgme_op_keylist_end(ctx);
	for (guint i = 0; i < keys->len && rc == 0; i++) {
		gerr = gpgme_op_delete_ext(ctx, g_ptr_array_index(keys, i),
		    GPGME_DELETE_ALLOW_SECRET | GPGME_DELETE_FORCE);
		if (gerr)
			rc = sg_pgp_fail(err, "cannot remove the key", gerr);
		else
			(*count)++;
	}
	gpgme_release(ctx);
out:
	for (guint i = 0; i < keys->len; i++)
		gpgme_key_unref(g_ptr_array_index(keys, i));
	g_ptr_array_free(keys, TRUE);
	g_free(pattern);
	if (home == NULL)
		return rc;
	if (rc == 0 && *count > 0)
		return sg_pgp_stage_commit(ks, home, err);
	sg_pgp_stage_abort(home);
	if (rc < 0)
		*count = 0;
	return rc;
}
