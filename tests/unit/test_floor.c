/* OpenSSL's security floor: which releases have the flaws sealgate refuses
 * to run with, branch by branch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "sealgate/floor.h"

#define VNUM(major, minor, patch) \
	(((unsigned long)(major) << 28) | ((unsigned long)(minor) << 20) | \
	 ((unsigned long)(patch) << 4))

static void
test_releases(void **state)
{
	static const struct {
		unsigned long num;
		bool vulnerable;
		const char *fixed;
	} cases[] = {
		{ VNUM(3, 0, 0), true, "3.0.21" },
		{ VNUM(3, 0, 19), true, "3.0.21" },
		{ VNUM(3, 0, 20), true, "3.0.21" },
		{ VNUM(3, 0, 21), false, "3.0.21" },
		{ VNUM(3, 0, 22), false, "3.0.21" },
		{ VNUM(3, 0, 255), false, "3.0.21" },
		{ VNUM(3, 1, 8), true, "none" },     /* out of support */
		{ VNUM(3, 3, 6), true, "none" },
		{ VNUM(3, 4, 5), true, "3.4.6" },
		{ VNUM(3, 4, 6), false, "3.4.6" },
		{ VNUM(3, 5, 6), true, "3.5.7" },
		{ VNUM(3, 5, 7), false, "3.5.7" },
		{ VNUM(3, 6, 2), true, "3.6.3" },
		{ VNUM(3, 6, 3), false, "3.6.3" },
		{ VNUM(4, 0, 0), true, "4.0.1" },
		{ VNUM(4, 0, 1), false, "4.0.1" },
		{ VNUM(4, 1, 0), false, "none" },     /* released with the fix */
		{ VNUM(1, 1, 1), true, "none" },
	};
	char fixed[32];

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		bool v = sg_openssl_vulnerable(cases[i].num | 0xf, fixed,
		    sizeof(fixed));

		if (v != cases[i].vulnerable)
			fail_msg("%#lx: vulnerable %d", cases[i].num, v);
		assert_string_equal(fixed, cases[i].fixed);
	}
}

static void
test_version_text(void **state)
{
	char buf[32];

	(void)state;
	sg_openssl_version_text(VNUM(3, 0, 19) | 0xf, buf, sizeof(buf));
	assert_string_equal(buf, "3.0.19");
	sg_openssl_version_text(VNUM(4, 12, 3), buf, sizeof(buf));
	assert_string_equal(buf, "4.12.3");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_releases),
		cmocka_unit_test(test_version_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
