/* Bounds on password-based key derivation in files given to `keys import`
 * (PKCS#12, encrypted PKCS#8 keys), checked before any key is derived: a
 * sender-chosen iteration count must not keep the import busy. */
#ifndef SEALGATE_SMIME_PBE_H
#define SEALGATE_SMIME_PBE_H

#include <stdint.h>

#include <openssl/pkcs12.h>

#include "sealgate/error.h"

#define SG_PBE_MAX_ITER 1000000         /* one MAC or PBE iteration count */
#define SG_PBE_MAX_TOTAL 4000000        /* all counts of one file together */
#define SG_PBE_MAX_SCRYPT (1L << 24)    /* scrypt N * r * p */

/* Checks the MAC iteration count and the PBE parameters of every bag and
 * encrypted safe of p12 (decrypting the safes with pass only once their
 * own parameters passed). *total counts the iterations of the whole file
 * (start at 0; several PEM blocks add up). SG_ELIMIT above a bound,
 * SG_EINVAL for a derivation it cannot read; err says which. */
int sg_pbe_check_pkcs12(PKCS12 *p12, const char *pass, uint64_t *total,
			struct sg_err *err);

/* The same for an EncryptedPrivateKeyInfo (PEM "ENCRYPTED PRIVATE KEY"). */
int sg_pbe_check_pkcs8(const unsigned char *der, long len, uint64_t *total,
		       struct sg_err *err);

#endif
