/* Error codes and the error buffer shared by every sealgate module.
 *
 * Functions return 0 on success or a negative SG_E* code. Library code never
 * logs: it describes the failure in a struct sg_err the caller passes in,
 * and the caller decides whether and where to log it. */
#ifndef SEALGATE_ERROR_H
#define SEALGATE_ERROR_H

#include <stddef.h>

enum {
	SG_OK = 0,
	SG_ENOMEM = -1,     /* out of memory */
	SG_EIO = -2,        /* read/write/spool failure */
	SG_EINVAL = -3,     /* bad argument or usage */
	SG_ECONFIG = -4,    /* policy file missing or invalid */
	SG_ECRYPTO = -5,    /* GPGME / OpenSSL operation failed */
	SG_ENOKEY = -6,     /* no usable key or certificate */
	SG_EMALFORMED = -7, /* message cannot be parsed */
	SG_ELIMIT = -8,     /* a size, depth or count bound was exceeded */
	SG_EKEYSTORE = -9,  /* keystore missing, unsafe or corrupt */
	SG_EINTEGRITY = -10, /* decrypted data not integrity protected */
	SG_ECIPHER = -11,   /* a cipher outside the allow-list */
};

#define SG_ERR_MAX 512

/* Human readable description of a failure, filled by the callee. */
struct sg_err {
	int code;
	char msg[SG_ERR_MAX];
};

/* Sets code and message; returns code so that callers can write
 * "return sg_err_set(err, SG_EIO, ...)". err may be NULL. */
int sg_err_set(struct sg_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Static description of an SG_E* code. */
const char *sg_strerror(int code);

#endif
