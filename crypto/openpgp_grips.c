/* Key material shared between keys. A key may carry another key's (sub)key
 * as its own: gpg's "addkey" takes an existing keygrip, and only the public
 * part is needed to do that. GnuPG finds secret key files by keygrip alone,
 * so such a key would decrypt and sign with the other key's secret. The
 * keystore refuses to take one in (sg_openpgp_import), and decryption and
 * signing refuse an address whose keys share material with another key
 * (for keystores filled before). */
#include <string.h>

#include <glib.h>

#include "openpgp_int.h"

GHashTable *
sg_pgp_grips_new(void)
{
	return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
}

void
sg_pgp_grips_add(GHashTable *owner, GHashTable *shared, gpgme_key_t key)
{
	for (gpgme_subkey_t sk = key->subkeys; sk; sk = sk->next) {
		const char *first;

		if (sk->keygrip == NULL || key->fpr == NULL)
			continue;
		first = g_hash_table_lookup(owner, sk->keygrip);
		if (first == NULL)
			g_hash_table_insert(owner, g_strdup(sk->keygrip),
			    g_strdup(key->fpr));
		else if (shared != NULL && strcmp(first, key->fpr) != 0 &&
		    !g_hash_table_contains(shared, sk->keygrip))
			g_hash_table_insert(shared, g_strdup(sk->keygrip),
			    g_strdup_printf("%s and %s", first, key->fpr));
	}
}

/* Adds the keyring in ctx to owner (keygrip -> fingerprint of the first
 * primary key seen with it); the keygrips two primary keys use go to
 * shared (keygrip -> "FPR1 and FPR2"). */
static int
scan(gpgme_ctx_t ctx, GHashTable *owner, GHashTable *shared,
     struct sg_err *err)
{
	gpgme_keylist_mode_t mode = gpgme_get_keylist_mode(ctx);
	gpgme_key_t key;
	gpgme_error_t gerr;
	int rc = SG_OK;

	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL |
	    GPGME_KEYLIST_MODE_WITH_KEYGRIP);
	gerr = gpgme_op_keylist_start(ctx, NULL, 0);
	while (!gerr && !(gerr = gpgme_op_keylist_next(ctx, &key))) {
		sg_pgp_grips_add(owner, shared, key);
		gpgme_key_unref(key);
	}
	if (gpg_err_code(gerr) != GPG_ERR_EOF)
		rc = sg_pgp_fail(err, "key listing failed", gerr);
	gpgme_op_keylist_end(ctx);
	gpgme_set_keylist_mode(ctx, mode);
	return rc;
}

int
sg_pgp_refuse_shared(gpgme_ctx_t ctx, GHashTable *file_grips,
		     struct sg_err *err)
{
	GHashTable *shared = sg_pgp_grips_new();
	GHashTableIter it;
	gpointer grip, keys;
	int rc;

	rc = scan(ctx, file_grips, shared, err);
	g_hash_table_iter_init(&it, shared);
	if (rc == 0 && g_hash_table_iter_next(&it, &grip, &keys))
		rc = sg_err_set(err, SG_EINVAL, "keys %s share key material "
		    "(keygrip %s): a key may not carry another key's (sub)key; "
		    "nothing was imported", (char *)keys, (char *)grip);
	g_hash_table_destroy(shared);
	return rc;
}

int
sg_pgp_check_own_material(const struct sg_keystore *ks, const char *addr,
			  struct sg_err *err)
{
	GHashTable *owner = sg_pgp_grips_new();
	GHashTable *shared = sg_pgp_grips_new();
	gpgme_ctx_t ctx;
	gpgme_key_t key;
	gpgme_error_t gerr;
	char *pattern;
	int rc;

	rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0) {
		g_hash_table_destroy(owner);
		g_hash_table_destroy(shared);
		return rc;
	}
	rc = scan(ctx, owner, shared, err);
	pattern = g_strdup_printf("<%s>", addr);
	gpgme_set_keylist_mode(ctx, GPGME_KEYLIST_MODE_LOCAL |
	    GPGME_KEYLIST_MODE_WITH_KEYGRIP);
	gerr = rc == 0 && g_hash_table_size(shared) > 0 ?
	    gpgme_op_keylist_start(ctx, pattern, 0) : GPG_ERR_EOF;
	while (!gerr && !(gerr = gpgme_op_keylist_next(ctx, &key))) {
		for (gpgme_subkey_t sk = key->subkeys; sk && rc == 0; sk = sk->next)
			if (sk->keygrip != NULL &&
			    g_hash_table_contains(shared, sk->keygrip))
				rc = sg_err_set(err, SG_ENOKEY, "the keys of %s "
				    "share key material with another key (keys "
				    "%s): not used; remove the wrong one", addr,
				    (char *)g_hash_table_lookup(shared,
				    sk->keygrip));
		gpgme_key_unref(key);
	}
	if (rc == 0 && gpg_err_code(gerr) != GPG_ERR_EOF)
		rc = sg_pgp_fail(err, "key listing failed", gerr);
	gpgme_op_keylist_end(ctx);
	gpgme_release(ctx);
	g_free(pattern);
	g_hash_table_destroy(owner);
	g_hash_table_destroy(shared);
	return rc;
}
