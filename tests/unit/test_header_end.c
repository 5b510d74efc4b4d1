/* The end of a header block (sg_header_end and friends): the first empty
 * line, found the same whether the bytes come at once or in pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sealgate/header.h"

static const struct {
	const char *name;
	const char *text;
	gssize body;            /* -1: no empty line */
} cases[] = {
	{ "empty input", "", -1 },
	{ "LF header", "A: 1\nB: 2\n\nbody\n", 11 },
	{ "CRLF header", "A: 1\r\nB: 2\r\n\r\nbody\r\n", 14 },
	{ "empty header, LF", "\nbody", 1 },
	{ "empty header, CRLF", "\r\nbody", 2 },
	{ "mixed line ends", "A: 1\r\nB: 2\n\r\nbody", 13 },
	{ "folded field", "A: 1\r\n\tand more\r\n\r\nx", 19 },
	{ "blank continuation is no empty line", "A: 1\n \nB: 2\n\nx", 13 },
	{ "tab line is no empty line", "A: 1\n\t\r\n\nx", 9 },
	{ "CR CR LF is no empty line", "A: 1\n\r\r\n\nx", 9 },
	{ "CR inside a line", "A: 1\rB: 2\n\nx", 11 },
	{ "no empty line", "A: 1\r\nB: 2\r\n", -1 },
	{ "lone CR at the end", "A: 1\r\n\r", -1 },
	{ "only the first empty line counts", "A\n\nB\n\nC", 3 },
};

static void
test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		gssize got = sg_header_end(cases[i].text, strlen(cases[i].text));

		if (got != cases[i].body)
			fail_msg("%s: body at %zd, want %zd", cases[i].name, got,
			    cases[i].body);
	}
}

/* Fed in two pieces cut anywhere, or byte by byte: the same answer. */
static void
test_pieces(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		const char *t = cases[i].text;
		size_t n = strlen(t);
		struct sg_header_end he;
		bool found;

		for (size_t cut = 0; cut <= n; cut++) {
			sg_header_end_init(&he);
			found = sg_header_end_feed(&he, t, cut);
			found = sg_header_end_feed(&he, t + cut, n - cut) || found;
			assert_int_equal(found, cases[i].body >= 0);
			if (found && (gssize)he.body != cases[i].body)
				fail_msg("%s cut at %zu: body at %zu", cases[i].name,
				    cut, (size_t)he.body);
		}
		sg_header_end_init(&he);
		found = false;
		for (size_t k = 0; k < n; k++)
			found = sg_header_end_feed(&he, t + k, 1);
		assert_int_equal(found, cases[i].body >= 0);
		if (found)
			assert_int_equal((gssize)he.body, cases[i].body);
	}
}

static void
test_line_empty(void **state)
{
	(void)state;
	assert_true(sg_header_line_empty("", 0));
	assert_true(sg_header_line_empty("\r", 1));
	assert_false(sg_header_line_empty(" ", 1));
	assert_false(sg_header_line_empty("\t", 1));
	assert_false(sg_header_line_empty("\r\r", 2));
	assert_false(sg_header_line_empty("A: 1", 4));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_line_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
