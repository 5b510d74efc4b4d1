/* OpenPGP with GPGME on the keystore's own GnuPG home. Every function makes
 * its own GPGME context, so they may run on several threads at once;
 * sg_openpgp_init() must have run first. */
#ifndef SEALGATE_OPENPGP_H
#define SEALGATE_OPENPGP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <glib.h>

#include "sealgate/error.h"
#include "sealgate/io.h"
#include "sealgate/keystore.h"

#define SG_FPR_MAX 80
#define SG_MAX_PKESK 100       /* recipients of one inbound message */
#define SG_PGP_MAX_UIDS 100    /* user ids of a key keys import accepts */

/* Once per process, before any thread uses GPGME. */
int sg_openpgp_init(struct sg_err *err);

/* Removes the throwaway GnuPG homes, which hold copies of secret keys,
 * that processes no longer running left in TMPDIR (e.g. a milter killed
 * during a decryption), their agents first; returns how many. Call before
 * this process makes a home of its own. */
unsigned sg_openpgp_sweep_homes(void);

/* Version string of GPGME and of the gpg engine (static storage). */
const char *sg_openpgp_gpgme_version(void);
const char *sg_openpgp_engine_version(void);

/* Finds the best usable encryption key for addr: not expired, revoked,
 * disabled or invalid, with a valid user id whose address is addr and an
 * encryption-capable subkey. Writes its fingerprint to fpr.
 * SG_ENOKEY when there is none (err says why). ks must be a snapshot
 * (sg_keystore_snapshot): the answer comes from its index. */
int sg_openpgp_find_key(const struct sg_keystore *ks, const char *addr,
			char fpr[SG_FPR_MAX], struct sg_err *err);

enum {
	SG_PGP_HIDE_RECIPIENTS = 1 << 0, /* throw-keyids: anonymous recipients */
};

/* How sg_openpgp_encrypt encrypted, for the log. */
struct sg_openpgp_enc {
	const char *engine;     /* "rnp" (in process) or "gpg" */
	const char *cipher;     /* with rnp: its cipher, else NULL */
	char fallback[256];     /* why rnp was tried and not used, else "" */
};

/* Encrypts everything in to the keys with the given fingerprints, writing
 * ASCII armor to out. With a signer (fingerprint of a secret key), signs
 * and encrypts in one OpenPGP message (RFC 3156 §6.2). Encryption alone
 * to a snapshot's keys, key ids shown, runs in process (librnp) unless
 * rnp cannot use a key exactly as gpg would, or SEALGATE_OPENPGP_ENGINE
 * was "gpg" at sg_openpgp_init; everything else runs gpg. info (may be
 * NULL) says which. */
int sg_openpgp_encrypt(const struct sg_keystore *ks, const char *const *fprs,
		       size_t nfprs, const char *signer, int flags,
		       struct sg_reader *in, struct sg_writer *out,
		       struct sg_openpgp_enc *info, struct sg_err *err);

/* Finds the best usable signing key (a secret key) for addr. SG_ENOKEY
 * when there is none. ks must be a snapshot, as above. */
int sg_openpgp_find_signing_key(const struct sg_keystore *ks, const char *addr,
				char fpr[SG_FPR_MAX], struct sg_err *err);

/* Writes an armored detached signature of in to out; micalg receives the
 * RFC 3156 micalg value (e.g. "pgp-sha256"). */
int sg_openpgp_sign(const struct sg_keystore *ks, const char *signer,
		    struct sg_reader *in, struct sg_writer *out,
		    char *micalg, size_t micalg_len, struct sg_err *err);

struct sg_openpgp_import {
	unsigned considered;
	unsigned imported;
	unsigned unchanged;
	unsigned secret_imported;
	unsigned revocations;   /* revocation certificates applied */
	char **fprs;            /* NULL-terminated; every key in the file */
	int *changed;           /* per fprs entry: new or updated */
};

/* Checks every key in data (in a throwaway GnuPG home): a key without a
 * usable encryption subkey, or RSA below 2048 bits is refused (SG_EINVAL,
 * err names the key). A revoked or expired key is refused too unless the
 * file holds the secret part of one of its encryption (sub)keys and one
 * of its user ids that is not revoked itself names an address that
 * internal says is internal: it then enters to decrypt only (never to
 * encrypt or sign). *keys: how many. */
int sg_openpgp_check(const void *data, size_t len,
		     const struct sg_internal *internal, unsigned *keys,
		     struct sg_err *err);

/* Imports keys (armored or binary) after sg_openpgp_check: one bad key
 * refuses the whole file. SG_EINVAL also when data holds no key. */
int sg_openpgp_import(const struct sg_keystore *ks, const void *data,
		      size_t len, const struct sg_internal *internal,
		      struct sg_openpgp_import *res, struct sg_err *err);
void sg_openpgp_import_clear(struct sg_openpgp_import *res);

/* One identity (user id with an address) of a key: what it serves that
 * address for. A revoked user id serves nothing; an expired or revoked key
 * with its secret part only decrypts. */
struct sg_openpgp_identity {
	const char *addr;
	const char *fpr;
	const char *state;      /* active, expired, revoked, disabled, invalid */
	time_t expires;         /* 0: never */
	bool can_encrypt;
	bool can_decrypt;
	bool can_sign;
	bool secret;
};

typedef void (*sg_openpgp_list_cb)(const struct sg_openpgp_identity *id,
				   void *arg);

/* Calls cb for every identity of every key, or of the keys matching
 * pattern (NULL: all). */
int sg_openpgp_list(const struct sg_keystore *ks, const char *pattern,
		    sg_openpgp_list_cb cb, void *arg, struct sg_err *err);

/* The binary packets of an OpenPGP message: for armor (data starts with
 * "-----" after white space), exactly one "PGP MESSAGE" block with only
 * white space around it, decoded; a line of only white space, including
 * the no-break space U+00A0, counts as the armor's empty line. Binary data
 * as it is (white space before it makes it malformed: packets never start
 * with white space). NULL for malformed armor. (transfer full) */
GByteArray *sg_openpgp_binary(const void *data, size_t len);

/* sg_openpgp_binary of what in delivers, decoded while it is read (the
 * same reader, in pieces): sg_openpgp_reader_read is the read of a struct
 * sg_reader, SG_EMALFORMED once the armor turns out malformed (at the
 * latest at its end: a caller that must know before it uses the packets
 * reads them to the end first), SG_EIO when in fails. in must outlive the
 * reader. (transfer full) */
struct sg_openpgp_reader;
struct sg_openpgp_reader *sg_openpgp_reader_new(struct sg_reader *in);
int sg_openpgp_reader_read(void *ctx, void *buf, size_t len, size_t *nread);
void sg_openpgp_reader_free(struct sg_openpgp_reader *r);

/* Integrity protection of an OpenPGP encrypted message. */
enum { SG_PGP_NONE = 0, SG_PGP_MDC, SG_PGP_AEAD };

/* Appends the key ids (16 upper-case hex digits; all zeros for a hidden
 * recipient) of the public-key encrypted session keys at the start of an
 * OpenPGP message (armored or binary, see sg_openpgp_binary), and tells
 * from the packet that follows whether the data is integrity protected.
 * SG_EMALFORMED for malformed armor or when there is no session key
 * packet. */
int sg_openpgp_recipients(const void *data, size_t len, GPtrArray *keyids,
			  int *integrity, struct sg_err *err);

/* The same for packets already decoded (what sg_openpgp_binary gives), as
 * they are: never decoded again. packets may be their start only
 * (SG_PGP_HEAD_MAX bytes are more than the session key packets take); a
 * packet cut off by its end counts as no integrity protection. */
#define SG_PGP_HEAD_MAX (1024 * 1024)
int sg_openpgp_packets_recipients(const void *packets, size_t len,
				  GPtrArray *keyids, int *integrity,
				  struct sg_err *err);

/* Appends the key ids of the secret (sub)keys that decrypt for addr:
 * encryption-capable, of keys with a user id for addr that is not revoked
 * itself, expired and revoked keys included (kept to decrypt mail sent
 * before), as gpg lists them. SG_EKEYSTORE when it lists none though ks,
 * a snapshot, holds one: the keystore cannot be read (e.g. its mode was
 * changed). */
int sg_openpgp_decryption_subkeys(const struct sg_keystore *ks,
				  const char *addr, GPtrArray *keyids,
				  struct sg_err *err);

struct sg_openpgp_decrypted {
	bool is_mime;           /* the sender marked the content as MIME */
	bool signed_inside;     /* a signature was found inside */
};

struct sg_sig;

/*
 * Decryption happens in two steps, so that a message is only ever opened
 * with the envelope recipient's own key (DESIGN.md §4 rule 3):
 *
 * 1. sg_openpgp_session_key_as() decrypts the message in reads with
 *    addr's secret keys alone (those sg_openpgp_decryption_subkeys names,
 *    by fingerprint), in a throwaway GnuPG home that holds nothing else,
 *    whatever key ids the message names, and returns the session key that
 *    opened it ("ALGO:HEX"). The plaintext goes to out (a caller that only
 *    wants the key passes a bounded sink).
 * 2. sg_openpgp_decrypt_with() decrypts it (in, read from the start
 *    again) with that session key in the keystore's home, where no secret
 *    key is consulted, and verifies a signature inside (RFC 3156 §6.2)
 *    with the keystore's public keys.
 *
 * The message (armored or binary) is read from in as gpg goes, never
 * held. Both succeed only when the message decrypted completely AND is
 * integrity protected; on any failure the caller must discard what out
 * received. SG_EINTEGRITY: no or bad MDC; SG_ELIMIT: out refused more
 * data; SG_ENOKEY: addr has no secret key that opens it.
 */
int sg_openpgp_session_key_as(const struct sg_keystore *ks, const char *addr,
			      struct sg_reader *in, struct sg_writer *out,
			      char **session_key, struct sg_err *err);

/* Step 2 above; when the message is also signed and sig is not NULL, the
 * signature's result goes to sig. */
int sg_openpgp_decrypt_with(const struct sg_keystore *ks,
			    const char *session_key, struct sg_reader *in,
			    struct sg_writer *out,
			    struct sg_openpgp_decrypted *info,
			    struct sg_sig *sig, struct sg_err *err);

/* Writes the armored keys named by what (an address or a fingerprint),
 * public only unless secret; *count says how many there were (0: none,
 * nothing written). */
int sg_openpgp_export(const struct sg_keystore *ks, const char *what,
		      bool secret, struct sg_writer *out, unsigned *count,
		      struct sg_err *err);

/* Removes the keys (public and secret) named by what. */
int sg_openpgp_remove(const struct sg_keystore *ks, const char *what,
		      unsigned *count, struct sg_err *err);

#endif
