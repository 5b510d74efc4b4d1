/* Which OpenSSL releases are below sealgate's security floor. */
#include <stdio.h>

#include <openssl/crypto.h>

#include "sealgate/floor.h"

#define VNUM(major, minor, patch) \
	(((unsigned long)(major) << 28) | ((unsigned long)(minor) << 20) | \
	 ((unsigned long)(patch) << 4))

/*
 * The first release of each branch with the fixes for SG_OPENSSL_FLAWS
 * (the OpenSSL advisory of 9 June 2026). Branches 3.1 to 3.3 were out of
 * support by then and have no fixed release; branches after 4.0 were
 * released with the fixes.
 */
static const struct {
	unsigned major, minor, fixed_patch;
} fixed_releases[] = {
	{ 3, 0, 21 },
	{ 3, 4, 6 },
	{ 3, 5, 7 },
	{ 3, 6, 3 },
	{ 4, 0, 1 },
};

#define LAST_AFFECTED VNUM(4, 0, 0)

bool
sg_openssl_vulnerable(unsigned long num, char *fixed, size_t fixed_len)
{
	unsigned major = (unsigned)(num >> 28) & 0xf;
	unsigned minor = (unsigned)(num >> 20) & 0xff;
	unsigned patch = (unsigned)(num >> 4) & 0xff;

	for (size_t i = 0; i < sizeof(fixed_releases) / sizeof(fixed_releases[0]); i++) {
		if (fixed_releases[i].major != major ||
		    fixed_releases[i].minor != minor)
			continue;
		snprintf(fixed, fixed_len, "%u.%u.%u", major, minor,
		    fixed_releases[i].fixed_patch);
		return patch < fixed_releases[i].fixed_patch;
	}
	snprintf(fixed, fixed_len, "none");
	return VNUM(major, minor, patch) <= LAST_AFFECTED;
}

void
sg_openssl_version_text(unsigned long num, char *buf, size_t len)
{
	snprintf(buf, len, "%lu.%lu.%lu", (num >> 28) & 0xf, (num >> 20) & 0xff,
	    (num >> 4) & 0xff);
}

unsigned long
sg_openssl_runtime(void)
{
	return OpenSSL_version_num();
}
