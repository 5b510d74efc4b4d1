#include <stdarg.h>
#include <stdio.h>

#include "sealgate/error.h"

int
sg_err_set(struct sg_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

const char *
sg_strerror(int code)
{
	switch (code) {
	case SG_OK:		return "success";
	case SG_ENOMEM:		return "out of memory";
	case SG_EIO:		return "input/output error";
	case SG_EINVAL:		return "invalid argument";
	case SG_ECONFIG:	return "configuration error";
	case SG_ECRYPTO:	return "cryptographic operation failed";
	case SG_ENOKEY:		return "no usable key";
	case SG_EMALFORMED:	return "malformed message";
	case SG_ELIMIT:		return "limit exceeded";
	case SG_EKEYSTORE:	return "keystore error";
	case SG_EINTEGRITY:	return "integrity check failed";
	case SG_ECIPHER:	return "cipher not allowed";
	default:		return "unknown error";
	}
}
