/* Loaded with LD_PRELOAD by the security-floor tests: OpenSSL_version_num()
 * answers the release named in $SEALGATE_FAKE_OPENSSL_VERSION ("3.0.19"),
 * so that a test shows what sealgate does on a release the machine does
 * not have. Everything else is the real OpenSSL. */
#include <stdio.h>
#include <stdlib.h>

unsigned long OpenSSL_version_num(void);

unsigned long
OpenSSL_version_num(void)
{
	const char *v = getenv("SEALGATE_FAKE_OPENSSL_VERSION");
	unsigned long major, minor, patch;

	if (v == NULL || sscanf(v, "%lu.%lu.%lu", &major, &minor, &patch) != 3)
		abort();
	return major << 28 | minor << 20 | patch << 4;
}
