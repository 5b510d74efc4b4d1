/* Internals shared by crypto/openpgp*.c. */
#ifndef SEALGATE_OPENPGP_INT_H
#define SEALGATE_OPENPGP_INT_H

#include <stdbool.h>
#include <sys/types.h>

#include <glib.h>
#include <gpgme.h>

#include "sealgate/openpgp.h"

/* Describes a GPGME failure in err; returns SG_ECRYPTO. */
int sg_pgp_fail(struct sg_err *err, const char *what, gpgme_error_t gerr);

/* A context on the keystore's GnuPG home, offline. */
int sg_pgp_ctx(const struct sg_keystore *ks, gpgme_ctx_t *out,
	       struct sg_err *err);

/* A context on another GnuPG home, offline, never asking for a
 * passphrase. */
int sg_pgp_ctx_at(const char *home, gpgme_ctx_t *out, struct sg_err *err);

/* Keyring changes on a copy of the GnuPG home (sg_keystore_stage_begin
 * on ks->gnupg_home); commit and abort also stop the copy's agent. */
int sg_pgp_stage_commit(const struct sg_keystore *ks, char *home,
			struct sg_err *err);
void sg_pgp_stage_abort(char *home);

bool sg_pgp_key_usable(gpgme_key_t key);
bool sg_pgp_uid_matches(gpgme_key_t key, const char *addr);

/* Whether the keystore holds the secret part of a (sub)key of key (its
 * file in private-keys-v1.d); key must be listed with keygrips. */
bool sg_pgp_has_secret(const struct sg_keystore *ks, gpgme_key_t key);
/* The same for one (sub)key. */
bool sg_pgp_subkey_has_secret(const struct sg_keystore *ks, gpgme_subkey_t sk);

/* Calls fn for every key of the keystore's keyring that matches pattern
 * (NULL: all), listed with keygrips, in one gpg run (fn's key is
 * borrowed); *count says how many. gpg reports an unreadable keyring
 * only on its exit status, which GPGME does not pass on: such a listing
 * just ends early. */
typedef void (*sg_pgp_key_fn)(gpgme_key_t key, void *arg);
int sg_pgp_each_key(const struct sg_keystore *ks, const char *pattern,
		    sg_pgp_key_fn fn, void *arg, unsigned *count,
		    struct sg_err *err);

/* Addresses become gpg search patterns: refuse anything odd. */
bool sg_pgp_addr_ok(const char *addr);

/* GPGME data callbacks; the handle is a struct sg_reader / sg_writer. */
ssize_t sg_pgp_cb_read(void *handle, void *buf, size_t len);
ssize_t sg_pgp_cb_write(void *handle, const void *buf, size_t len);

/* Removes a throwaway GnuPG home: its agent first, then the files. */
void sg_pgp_remove_home(const char *home);

/* Prefixes of throwaway GnuPG homes: decryption with one recipient's
 * keys, checking a key file before import. */
#define SG_PGP_HOME_DECRYPT "sgk"
#define SG_PGP_HOME_CHECK "sgi"

/* A new throwaway GnuPG home in TMPDIR, PREFIX.PID.XXXXXX (0700), or NULL
 * (SG_EIO in err). The pid lets sg_openpgp_sweep_homes find the homes of
 * a process that died. (transfer full) */
char *sg_pgp_make_home(const char *prefix, struct sg_err *err);

/* Keygrip tables (see openpgp_grips.c): keygrip -> primary fingerprint. */
GHashTable *sg_pgp_grips_new(void);
/* Adds key's keygrips to owner; with shared, a keygrip owner already has
 * for another primary key goes there. */
void sg_pgp_grips_add(GHashTable *owner, GHashTable *shared, gpgme_key_t key);
/* Fails when two primary keys share (sub)key material (a keygrip), naming
 * them: among the keys of an imported file (file_grips, filled with
 * sg_pgp_grips_add) and the keyring in ctx. */
int sg_pgp_refuse_shared(gpgme_ctx_t ctx, GHashTable *file_grips,
			 struct sg_err *err);
/* Fails (SG_ENOKEY) when a key of addr shares (sub)key material with
 * another key of the keystore. */
int sg_pgp_check_own_material(const struct sg_keystore *ks, const char *addr,
			      struct sg_err *err);

struct sg_sig;

/* Fills out from one GPGME signature result. */
void sg_openpgp_sig_result(gpgme_ctx_t ctx, gpgme_signature_t s,
			   struct sg_sig *out);

/* In-process encryption with librnp (openpgp_rnp.c): a snapshot's keys
 * loaded into rnp contexts, one context per encryption at a time. */
struct sg_pgp_rnp;
struct sg_pgp_rnp *sg_pgp_rnp_new(void);
void sg_pgp_rnp_free(struct sg_pgp_rnp *r);

/* Encrypts (no signature, key ids shown) in to the subkeys the snapshot
 * ks chose for the keys fprs, as gpg would (see openpgp_rnp.c). Returns
 * SG_ENOKEY, with the reason in why and nothing written, when rnp cannot
 * be used for one of the keys: the caller encrypts with gpg instead. Any
 * other failure is final (err). cipher receives the cipher's name. */
int sg_pgp_rnp_encrypt(const struct sg_keystore *ks, const char *const *fprs,
		       size_t nfprs, struct sg_reader *in, struct sg_writer *out,
		       const char **cipher, struct sg_err *why,
		       struct sg_err *err);

/* GnuPG 2.2's choice of a cipher (type 0) or a compression (type 1) from
 * the recipients' preference lists (NULL: the key states none), -1 when
 * there is none. */
int sg_pgp_select_algo(const GByteArray *const *lists, size_t n, int type);

#endif
