/* The keystore directory (gateway.keystore). It must be private to the
 * gateway's user (mode 0700) and holds:
 *   openpgp/          an isolated GnuPG home for OpenPGP keys
 *   smime/certs/      X.509 certificates, FPR.pem (SHA-256 of the DER)
 *   smime/keys/       private keys of some of them, FPR.pem (0600)
 *   smime/anchors/    trust anchors, FPR.pem; an end-entity certificate
 *                     imported as an anchor is also in certs/ and is
 *                     trusted as it is
 *   deactivated       addresses, one per line, whose keys are kept but
 *                     never used to sign or decrypt (people who left)
 *   generation        replaced after every change (sg_keystore_bump), so
 *                     that a running gateway sees with one stat() that its
 *                     snapshot is out of date */
#ifndef SEALGATE_KEYSTORE_H
#define SEALGATE_KEYSTORE_H

#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>

#include "sealgate/error.h"

struct sg_keyindex;

/* What the generation file looked like: one stat(). */
struct sg_keystore_gen {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

/*
 * An open keystore. With an index (sg_keystore_snapshot) it is a
 * snapshot: immutable, reference-counted and shared read-only by threads;
 * key and certificate lookups and the deactivated list are answered from
 * memory, as they were when it was built, and start no process.
 */
struct sg_keystore {
	char *dir;
	char *gnupg_home;
	char *smime_dir;
	int refs;
	struct sg_keyindex *index;  /* NULL: not a snapshot */
	struct sg_keystore_gen gen; /* of a snapshot: seen before the build */
};

/* Path of a file in the S/MIME store: smime/SUB/NAME. (transfer full) */
char *sg_keystore_smime_path(const struct sg_keystore *ks, const char *sub,
			     const char *name);

enum {
	SG_KS_CREATE = 1 << 0, /* create the keystore directory when missing */
};

/* Opens (and with SG_KS_CREATE initialises) the keystore at dir. Refuses a
 * directory that other users can read or enter, and private key files
 * that they could read. (transfer full) */
int sg_keystore_open(const char *dir, int flags, struct sg_err *err,
		     struct sg_keystore **out);

/* Drops a reference; the last one frees ks. Accepts NULL. */
void sg_keystore_free(struct sg_keystore *ks);

/* A new reference to ks. */
struct sg_keystore *sg_keystore_ref(struct sg_keystore *ks);

/* Which addresses are internal (the policy's internal_domains), for
 * imports: an expired or revoked key or certificate enters the keystore
 * only with its secret part and for an internal address, and then only to
 * decrypt. is_internal gets an address as written in a user id or a
 * certificate. */
struct sg_internal {
	bool (*is_internal)(const char *addr, void *arg);
	void *arg;
};

/* True when in (may be NULL: nothing is internal) says addr is internal. */
bool sg_internal_has(const struct sg_internal *in, const char *addr);

/* The form in which addresses of keys, certificates and the deactivated
 * list are compared with envelope addresses (canonical, letter case
 * folded), or NULL for what is not an address. (transfer full) */
typedef char *(*sg_addr_key_fn)(const char *addr);

/*
 * Opens the keystore at dir and indexes it: one GPGME key listing of the
 * keyring (canonical address -> OpenPGP keys with their validity,
 * capabilities, secret parts and creation times), the S/MIME certificates
 * and trust anchors (kept for the snapshot's lifetime) and the
 * deactivated list. addr_key folds every address. The generation file is
 * read first, so a change made during the build shows as a newer
 * generation. (transfer full)
 */
int sg_keystore_snapshot(const char *dir, sg_addr_key_fn addr_key,
			 struct sg_err *err, struct sg_keystore **out);

/* What a snapshot holds that is usable now and stops being usable by
 * until: OpenPGP keys (sg_keystore_expiring counts a key when its primary
 * key expires, or every subkey it has for encryption or signing), S/MIME
 * certificates and trust anchors. All 0 for a keystore that is not a
 * snapshot. */
struct sg_expiring {
	unsigned openpgp;
	unsigned smime;
	unsigned anchors;
};

void sg_keystore_expiring(const struct sg_keystore *ks, time_t now,
			  time_t until, struct sg_expiring *out);

/* The keystore's generation as one stat() of its generation file. */
void sg_keystore_generation(const char *dir, struct sg_keystore_gen *out);
bool sg_keystore_gen_equal(const struct sg_keystore_gen *a,
			   const struct sg_keystore_gen *b);

/* Marks a committed change: replaces the generation file atomically with
 * a higher number. Every change of the keystore calls it. */
int sg_keystore_bump(const char *dir, struct sg_err *err);

/* Waits for and takes the keystore's change lock (one change at a time);
 * returns a descriptor to close() to release it, or a negative code.
 * Refuses a keystore directory that belongs to another user: the files a
 * change writes must be readable by the gateway, which owns the store. */
int sg_keystore_lock(const struct sg_keystore *ks, struct sg_err *err);

/* Changes on a copy, all or nothing. begin copies part (a directory of
 * the keystore, e.g. ks->smime_dir) to *copy beside it, first removing
 * copies that killed changes left; commit makes the copy take part's
 * place in one atomic step; abort throws the copy away. Both free copy.
 * The caller holds the lock. */
int sg_keystore_stage_begin(const char *part, char **copy, struct sg_err *err);
int sg_keystore_stage_commit(const char *part, char *copy, struct sg_err *err);
void sg_keystore_stage_abort(char *copy);

/* Removes a directory tree; errors are ignored. */
void sg_keystore_remove_tree(const char *path);

/* True when addr is deactivated: from a snapshot's index, else read from
 * the file. */
bool sg_keystore_deactivated(const struct sg_keystore *ks, const char *addr);

/* Adds (on true) or removes addr from the deactivated list; the file is
 * replaced atomically. *changed says whether it was not already so. */
int sg_keystore_set_deactivated(const struct sg_keystore *ks, const char *addr,
				bool on, bool *changed, struct sg_err *err);

#endif
