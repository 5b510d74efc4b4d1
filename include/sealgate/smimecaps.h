/* What the owner of an S/MIME certificate is known to read (RFC 8551
 * 2.5.2, 2.7): the content encryptions of enum sg_smime_cipher that its
 * signatures announced in their SMIMECapabilities attribute, or that the
 * administrator stated. Kept in the keystore, one small file per
 * certificate and source, written aside and renamed into place (0600):
 *   smime-capabilities/FPR.seen    announced by a valid signature
 *   smime-capabilities/FPR.stated  stated with `keys import
 *                                  --smime-capabilities`; wins over seen
 * That directory is not part of what a keystore change replaces
 * (smime/, openpgp/), so the gateway records while `keys` commands run;
 * every lookup reads the files, no snapshot is rebuilt for them.
 * Functions may run on several threads at once. */
#ifndef SEALGATE_SMIMECAPS_H
#define SEALGATE_SMIMECAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "sealgate/error.h"
#include "sealgate/keystore.h"

#define SG_SMIME_CAPS_DIR "smime-capabilities"

/* A cipher's bit in a set of capabilities. */
#define SG_SMIME_CAP(cipher) (1u << (cipher))
#define SG_SMIME_CAPS_ALL 0xfu

/* Bounds on an announcement: an SMIMECapabilities value larger than this
 * or with more entries is not read at all. */
#define SG_SMIME_CAPS_MAX_BYTES 4096
#define SG_SMIME_CAPS_MAX_ITEMS 64

enum sg_caps_source {
	SG_CAPS_UNKNOWN = 0,
	SG_CAPS_SEEN,
	SG_CAPS_STATED,
};

struct sg_smime_caps {
	enum sg_caps_source source;
	unsigned ciphers;       /* SG_SMIME_CAP bits; 0: none sealgate makes */
	time_t signed_at;       /* seen: the announcing signature's time */
	time_t recorded;        /* when the file was written */
};

/* "aes-256-gcm", "aes-128-gcm", "aes-256-cbc", "aes-128-cbc"; NULL for
 * anything else. */
const char *sg_smime_cipher_name(int cipher);

/* A comma-separated list of cipher names as a set; SG_EINVAL (err names
 * the word) for an unknown name or an empty list. */
int sg_smime_caps_parse(const char *list, unsigned *out, struct sg_err *err);

/* The set as a comma-separated list, strongest first; "-" when empty. */
void sg_smime_caps_format(unsigned ciphers, char *buf, size_t len);

/* For people: "aes-256-gcm,aes-256-cbc (stated)", "aes-256-cbc (seen
 * 2026-12-01)" (UTC date of the record), "unknown". */
void sg_smime_caps_describe(const struct sg_smime_caps *caps, char *buf,
			    size_t len);

/* What is known of certificate fpr: the stated set, else the seen one,
 * else source SG_CAPS_UNKNOWN. A file that cannot be read or parsed makes
 * it unknown too (a stated one is never passed over for a seen one), and
 * returns SG_EKEYSTORE with the reason in err. */
int sg_smime_caps_get(const struct sg_keystore *ks, const char *fpr,
		      struct sg_smime_caps *out, struct sg_err *err);

/*
 * Records ciphers as announced by a valid signature, made at signed_at, of
 * certificate fpr. Only for a certificate of the keystore (smime/certs),
 * only by the keystore's owner, never for a signature older than the one
 * recorded (a replayed message does not turn the clock back), and only
 * when the set changes or the record is a day old: most signed mail
 * writes nothing. *changed says whether the file was written.
 */
int sg_smime_caps_record(const struct sg_keystore *ks, const char *fpr,
			 unsigned ciphers, time_t signed_at, bool *changed,
			 struct sg_err *err);

/* States ciphers for certificate fpr, or with clear removes the
 * statement (what was seen counts again). *changed says whether the file
 * changed. The caller holds the keystore lock. */
int sg_smime_caps_state(const struct sg_keystore *ks, const char *fpr,
			unsigned ciphers, bool clear, bool *changed,
			struct sg_err *err);

#endif
