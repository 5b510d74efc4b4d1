/* The security floor of the crypto libraries sealgate runs on: OpenSSL
 * releases with published flaws in what a mail gateway does (CMS
 * AuthEnvelopedData, PKCS#7 verification) are recognised at run time, so
 * that the daemon can refuse them (README, "Security floor"). */
#ifndef SEALGATE_FLOOR_H
#define SEALGATE_FLOOR_H

#include <stdbool.h>
#include <stddef.h>

/* The flaws, for messages: "CVE-2026-34182 (...), CVE-2026-45447 (...)". */
#define SG_OPENSSL_FLAWS \
	"CVE-2026-34182 (forged CMS AuthEnvelopedData accepted), " \
	"CVE-2026-45447 (use-after-free in PKCS7_verify)"

/* True when the OpenSSL release whose OpenSSL_version_num() is num has the
 * flaws of SG_OPENSSL_FLAWS. Writes the first fixed release of num's branch
 * ("3.0.21"), or "none" for a branch that never got a fix, to fixed. */
bool sg_openssl_vulnerable(unsigned long num, char *fixed, size_t fixed_len);

/* "3.0.19" for num, into buf. */
void sg_openssl_version_text(unsigned long num, char *buf, size_t len);

/* The OpenSSL release in use at run time (OpenSSL_version_num()). */
unsigned long sg_openssl_runtime(void);

#endif
