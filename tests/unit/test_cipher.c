/* The S/MIME content encryption of a message (sg_cipher_choose): the
 * strongest cipher every recipient is known to read, AES-256-CBC when a
 * recipient's capabilities are unknown, what a rule or the default forces
 * (the most compatible of all), and the reason given for it. Every row
 * follows README "S/MIME encryption". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sealgate/plan.h"
#include "sealgate/smime.h"
#include "sealgate/smimecaps.h"

#define G256 SG_SMIME_CAP(SG_SMIME_AES256_GCM)
#define G128 SG_SMIME_CAP(SG_SMIME_AES128_GCM)
#define C256 SG_SMIME_CAP(SG_SMIME_AES256_CBC)
#define C128 SG_SMIME_CAP(SG_SMIME_AES128_CBC)
#define UNKNOWN 0u

/* One recipient of a row: capabilities, and what its decision forces. */
struct rc {
	unsigned caps;
	int forced;             /* -1: not set */
	const char *rule;       /* forcing rule, NULL: outbound.default */
};

#define BY_CAPS(c) { (c), -1, NULL }

struct row {
	const char *name;
	struct rc r[3];
	size_t n;
	int want;
	const char *why;
};

static const struct row rows[] = {
	{ "one unknown", { BY_CAPS(UNKNOWN) }, 1, SG_SMIME_AES256_CBC,
	  "capabilities of r0@partner.example unknown" },
	{ "one announcing GCM and CBC", { BY_CAPS(G256 | G128 | C256 | C128) }, 1,
	  SG_SMIME_AES256_GCM, "all recipients announced it" },
	{ "one announcing AES-128-GCM only", { BY_CAPS(G128) }, 1,
	  SG_SMIME_AES128_GCM, "all recipients announced it" },
	{ "one announcing CBC (openssl cms -sign)", { BY_CAPS(C256 | C128) }, 1,
	  SG_SMIME_AES256_CBC, "all recipients announced it" },
	{ "one announcing AES-128-CBC only", { BY_CAPS(C128) }, 1,
	  SG_SMIME_AES128_CBC, "all recipients announced it" },
	{ "GCM reader and unknown: CBC",
	  { BY_CAPS(G256 | C256), BY_CAPS(UNKNOWN) }, 2, SG_SMIME_AES256_CBC,
	  "capabilities of r1@partner.example unknown" },
	{ "two GCM readers", { BY_CAPS(G256 | C256), BY_CAPS(G256 | G128) }, 2,
	  SG_SMIME_AES256_GCM, "all recipients announced it" },
	{ "GCM-256 and GCM-128 readers: AES-128-GCM",
	  { BY_CAPS(G256 | G128 | C256), BY_CAPS(G128 | C256) }, 2,
	  SG_SMIME_AES128_GCM, "all recipients announced it" },
	{ "GCM readers of different key sizes: the CBC both read",
	  { BY_CAPS(G256 | C256), BY_CAPS(G128 | C256) }, 2, SG_SMIME_AES256_CBC,
	  "all recipients announced it" },
	{ "AES-128-CBC reader and unknown: AES-128-CBC",
	  { BY_CAPS(C128), BY_CAPS(UNKNOWN) }, 2, SG_SMIME_AES128_CBC,
	  "the strongest all recipients read; capabilities of "
	  "r1@partner.example unknown" },
	{ "nothing in common: AES-256-CBC",
	  { BY_CAPS(G256), BY_CAPS(C128) }, 2, SG_SMIME_AES256_CBC,
	  "no cipher that all recipients announced" },
	{ "GCM only and unknown: nothing in common",
	  { BY_CAPS(G256), BY_CAPS(UNKNOWN) }, 2, SG_SMIME_AES256_CBC,
	  "no cipher that all recipients announced" },
	{ "three unknown named",
	  { BY_CAPS(UNKNOWN), BY_CAPS(UNKNOWN), BY_CAPS(UNKNOWN) }, 3,
	  SG_SMIME_AES256_CBC, "capabilities of r0@partner.example, "
	  "r1@partner.example, r2@partner.example unknown" },
	{ "forced by a rule over GCM capabilities",
	  { { G256, SG_SMIME_AES128_CBC, "legacy" } }, 1, SG_SMIME_AES128_CBC,
	  "forced by rule \"legacy\"" },
	{ "forced GCM by the default over unknown capabilities",
	  { { UNKNOWN, SG_SMIME_AES256_GCM, NULL } }, 1, SG_SMIME_AES256_GCM,
	  "forced by outbound.default" },
	{ "forced GCM for one, unknown other: CBC serves both",
	  { { UNKNOWN, SG_SMIME_AES256_GCM, "gcm" }, BY_CAPS(UNKNOWN) }, 2,
	  SG_SMIME_AES256_CBC, "capabilities of r1@partner.example unknown" },
	{ "forced AES-128-CBC for one, GCM reader other",
	  { { UNKNOWN, SG_SMIME_AES128_CBC, "legacy" }, BY_CAPS(G256) }, 2,
	  SG_SMIME_AES128_CBC, "forced by rule \"legacy\"" },
	{ "two forced: the more compatible",
	  { { UNKNOWN, SG_SMIME_AES128_GCM, "short" },
	    { UNKNOWN, SG_SMIME_AES256_CBC, "old" } }, 2, SG_SMIME_AES256_CBC,
	  "forced by rule \"old\"" },
	{ "forced equal to the choice: forced is named",
	  { { UNKNOWN, SG_SMIME_AES256_CBC, "cbc" }, BY_CAPS(UNKNOWN) }, 2,
	  SG_SMIME_AES256_CBC, "forced by rule \"cbc\"" },
};

static const char *const addrs[] = {
	"r0@partner.example", "r1@partner.example", "r2@partner.example",
};

static void
test_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *t = &rows[i];
		struct sg_cipher_rcpt r[3];
		char why[200] = "";
		int got;

		for (size_t k = 0; k < t->n; k++) {
			r[k].addr = addrs[k];
			r[k].fpr = NULL;
			r[k].caps = t->r[k].caps;
			r[k].forced = t->r[k].forced;
			r[k].forced_by = t->r[k].rule;
		}
		got = sg_cipher_choose(r, t->n, why, sizeof(why));
		if (got != t->want || strcmp(why, t->why) != 0)
			fail_msg("%s: got %s (%s), want %s (%s)", t->name,
			    sg_smime_cipher_name(got), why,
			    sg_smime_cipher_name(t->want), t->why);
	}
}

/* More than three unknown recipients: three named, the rest counted. */
static void
test_many_unknown(void **state)
{
	struct sg_cipher_rcpt r[5];
	char why[200];
	char names[5][32];

	(void)state;
	for (int k = 0; k < 5; k++) {
		snprintf(names[k], sizeof(names[k]), "u%d@partner.example", k);
		r[k] = (struct sg_cipher_rcpt){ names[k], NULL, -1, NULL, 0 };
	}
	assert_int_equal(sg_cipher_choose(r, 5, why, sizeof(why)),
	    SG_SMIME_AES256_CBC);
	assert_string_equal(why, "capabilities of u0@partner.example, "
	    "u1@partner.example, u2@partner.example and 2 more unknown");
}

/* The names and the list format used in files, logs and `keys list`. */
static void
test_names(void **state)
{
	struct sg_err err = { 0 };
	unsigned set = 0;
	char buf[128];

	(void)state;
	assert_int_equal(sg_smime_caps_parse("aes-128-cbc, aes-256-gcm", &set,
	    &err), 0);
	assert_int_equal(set, G256 | C128);
	sg_smime_caps_format(set, buf, sizeof(buf));
	assert_string_equal(buf, "aes-256-gcm,aes-128-cbc");
	sg_smime_caps_format(0, buf, sizeof(buf));
	assert_string_equal(buf, "-");
	assert_int_equal(sg_smime_caps_parse("aes-256-gcm,des-ede3-cbc", &set,
	    &err), SG_EINVAL);
	assert_non_null(strstr(err.msg, "\"des-ede3-cbc\""));
	assert_int_equal(sg_smime_caps_parse("aes-192-cbc", &set, &err),
	    SG_EINVAL);
	assert_int_equal(sg_smime_caps_parse("", &set, &err), SG_EINVAL);
	assert_null(sg_smime_cipher_name(4));
	assert_null(sg_smime_cipher_name(-1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rows),
		cmocka_unit_test(test_many_unknown),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
