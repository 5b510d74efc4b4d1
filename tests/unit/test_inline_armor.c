/* Inline PGP as sg_mime_inspect judges it (sg_mime_protection_of,
 * sg_mime_has_nested_encryption): the text is read from where it lies in
 * pieces, so armor lines that straddle two pieces must count as they do
 * in one piece. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "sealgate/mime.h"

#define BEGIN "-----BEGIN PGP MESSAGE-----\r\n"
#define END "-----END PGP MESSAGE-----"

/* Parses a text/plain message with body (in base64 with b64) and reports
 * what the top part is taken for: 2 whole-message inline PGP, 1 armor
 * with other text (encrypted content mixed with the sender's), 0 no
 * armor. */
static int
judge_as(const GString *body, bool b64)
{
	GString *m = g_string_new("Content-Type: text/plain; charset=us-ascii\r\n");
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	GMimeMessage *parsed = NULL;
	GMimeStream *s;
	int verdict;

	if (b64) {
		char *enc = g_base64_encode((const guchar *)body->str, body->len);

		g_string_append(m, "Content-Transfer-Encoding: base64\r\n\r\n");
		for (size_t i = 0, n = strlen(enc); i < n; i += 76)
			g_string_append_printf(m, "%.76s\r\n", enc + i);
		g_free(enc);
	} else {
		g_string_append(m, "\r\n");
		g_string_append_len(m, body->str, (gssize)body->len);
	}
	s = g_mime_stream_mem_new_with_buffer(m->str, m->len);
	assert_int_equal(sg_mime_inspect(s, &info, &parsed, &err), 0);
	if (info.protection == SG_PROT_PGP_INLINE)
		verdict = 2;
	else
		verdict = sg_mime_has_nested_encryption(
		    g_mime_message_get_mime_part(parsed), 1) ? 1 : 0;
	g_object_unref(parsed);
	g_object_unref(s);
	g_string_free(m, TRUE);
	return verdict;
}

/* The same in 7bit and in base64. */
static int
judge(const GString *body)
{
	int verdict = judge_as(body, false);

	assert_int_equal(judge_as(body, true), verdict);
	return verdict;
}

/* Armor with a base64 body of n characters in lines of 64. */
static GString *
armor(size_t n)
{
	GString *s = g_string_new(BEGIN "\r\n");

	for (size_t i = 0; i < n; i++) {
		g_string_append_c(s, 'A');
		if (i % 64 == 63)
			g_string_append(s, "\r\n");
	}
	g_string_append(s, "\r\n=AAAA\r\n" END);
	return s;
}

static void
test_whole_and_partial(void **state)
{
	GString *a = armor(100), *t;

	(void)state;
	t = g_string_new(a->str);
	assert_int_equal(judge(t), 2);
	g_string_append(t, "\r\n \t\r\n");
	assert_int_equal(judge(t), 2);
	/* Text after the end line. */
	g_string_append(t, "P.S. not encrypted\r\n");
	assert_int_equal(judge(t), 1);
	g_string_free(t, TRUE);
	/* Text before the armor; also white space only (the armor must
	 * start the text). */
	t = g_string_new("Hello\r\n");
	g_string_append(t, a->str);
	assert_int_equal(judge(t), 1);
	g_string_free(t, TRUE);
	/* A second end line: the first one does not end the text. */
	t = g_string_new(a->str);
	g_string_append(t, "\r\n" END "\r\n");
	assert_int_equal(judge(t), 1);
	g_string_free(t, TRUE);
	/* No end line (base64: in 7bit text GMime marks no armor without
	 * an end line, and it is not read). */
	t = g_string_new(BEGIN "\r\nAAAA\r\n");
	assert_int_equal(judge_as(t, true), 1);
	g_string_free(t, TRUE);
	/* A NUL ends the text, as for a C string: the end line after it
	 * is not seen (base64 only: GMime sees no armor in 7bit text with
	 * a NUL). */
	t = g_string_new(BEGIN "\r\nAAAA\r\n");
	g_string_append_c(t, '\0');
	g_string_append(t, "\r\n" END "\r\n");
	assert_int_equal(judge_as(t, true), 1);
	g_string_free(t, TRUE);
	t = g_string_new("no armor here\r\n");
	assert_int_equal(judge(t), 0);
	g_string_free(t, TRUE);
	g_string_free(a, TRUE);
}

/* The begin and end lines at every offset around the sizes a stream may
 * be read in: the same answers. */
static void
test_across_pieces(void **state)
{
	static const size_t sizes[] = { 4096, 8192, 16384, 32768 };

	(void)state;
	for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
		for (size_t d = 0; d < 40; d++) {
			/* The end line straddles the boundary. */
			size_t n = sizes[k] - 60 + d;
			GString *a = armor(n - n / 64 * 2), *t;

			assert_int_equal(judge(a), 2);
			t = g_string_new("x\r\n");
			g_string_append(t, a->str);
			assert_int_equal(judge(t), 1);
			g_string_free(t, TRUE);
			/* The begin line straddles it, after other text. */
			t = g_string_new(NULL);
			while (t->len < sizes[k] - 20 + d / 2)
				g_string_append_c(t, 'y');
			g_string_append(t, "\r\n");
			g_string_append(t, a->str);
			assert_int_equal(judge(t), 1);
			g_string_free(t, TRUE);
			g_string_free(a, TRUE);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_and_partial),
		cmocka_unit_test(test_across_pieces),
	};

	g_mime_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
