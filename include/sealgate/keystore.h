/* The keystore directory (gateway.keystore): an isolated GnuPG home for
 * OpenPGP keys ("openpgp/"), later the S/MIME store. It must be private to
 * the gateway's user (mode 0700). */
#ifndef SEALGATE_KEYSTORE_H
#define SEALGATE_KEYSTORE_H

#include "sealgate/error.h"

struct sg_keystore {
	char *dir;
	char *gnupg_home;
};

enum {
	SG_KS_CREATE = 1 << 0, /* create the keystore directory when missing */
};

/* Opens (and with SG_KS_CREATE initialises) the keystore at dir. Refuses a
 * directory that other users can read or enter. (transfer full) */
int sg_keystore_open(const char *dir, int flags, struct sg_err *err,
		     struct sg_keystore **out);

void sg_keystore_free(struct sg_keystore *ks);

#endif
