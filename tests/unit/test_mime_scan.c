/* The boundary scan that bounds MIME parts and nesting before GMime
 * parses (sg_mime_prescan): it counts as sg_mime_inspect does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "sealgate/mime.h"

static int
prescan(const GString *text)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer(text->str, text->len);
	struct sg_err err = { 0 };
	int rc = sg_mime_prescan(s, &err);

	g_object_unref(s);
	return rc;
}

/* A multipart of type subtype with n parts, each with the given text
 * (header and body) after the boundary line. */
static GString *
multipart(const char *subtype, int n, const char *part, const char *eol)
{
	GString *s = g_string_new(NULL);

	g_string_append_printf(s, "Content-Type: multipart/%s;%s boundary=\"b\"%s%s",
	    subtype, eol, eol, eol);
	for (int i = 0; i < n; i++)
		g_string_append_printf(s, "--b%s%s", eol, part);
	g_string_append_printf(s, "--b--%s", eol);
	return s;
}

static void
test_part_count(void **state)
{
	GString *s;

	(void)state;
	/* The multipart and its parts: 10,000 entities pass, 10,001 not. */
	s = multipart("mixed", SG_MIME_MAX_PARTS - 1, "\r\n", "\r\n");
	assert_int_equal(prescan(s), 0);
	g_string_free(s, TRUE);
	s = multipart("mixed", SG_MIME_MAX_PARTS, "\n", "\n");
	assert_int_equal(prescan(s), SG_ELIMIT);
	g_string_free(s, TRUE);
	/* Blanks after the boundary still make a boundary line. */
	s = multipart("mixed", SG_MIME_MAX_PARTS, " \t\r\n", "\r\n");
	g_string_replace(s, "--b\r\n", "--b \t\r\n", 0);
	assert_int_equal(prescan(s), SG_ELIMIT);
	g_string_free(s, TRUE);
	/* Lines that only start like the boundary are content. */
	s = multipart("mixed", 1, "\r\n", "\r\n");
	for (int i = 0; i < SG_MIME_MAX_PARTS; i++)
		g_string_append(s, "--bx\r\n--b-\r\n");
	assert_int_equal(prescan(s), 0);
	g_string_free(s, TRUE);
	/* Parts of a digest are messages: two entities each. */
	s = multipart("digest", SG_MIME_MAX_PARTS / 2, "\r\nSubject: x\r\n\r\nx\r\n",
	    "\r\n");
	assert_int_equal(prescan(s), SG_ELIMIT);
	g_string_free(s, TRUE);
	s = multipart("mixed", SG_MIME_MAX_PARTS / 2, "\r\nSubject: x\r\n\r\nx\r\n",
	    "\r\n");
	assert_int_equal(prescan(s), 0);
	g_string_free(s, TRUE);
}

/* Messages embedded n deep, the innermost a text part. */
static GString *
embedded(int n)
{
	GString *s = g_string_new(NULL);

	for (int i = 0; i < n; i++)
		g_string_append(s, "Content-Type: message/rfc822\r\n\r\nSubject: x\r\n");
	g_string_append(s, "Content-Type: text/plain\r\n\r\nx\r\n");
	return s;
}

static void
test_depth(void **state)
{
	GString *s = embedded(SG_MIME_MAX_DEPTH - 1);
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	GMimeStream *m;

	(void)state;
	assert_int_equal(prescan(s), 0);
	m = g_mime_stream_mem_new_with_buffer(s->str, s->len);
	assert_int_equal(sg_mime_inspect(m, &info, NULL, &err), 0);
	assert_int_equal(info.depth, SG_MIME_MAX_DEPTH);
	g_object_unref(m);
	g_string_free(s, TRUE);
	s = embedded(SG_MIME_MAX_DEPTH);
	assert_int_equal(prescan(s), SG_ELIMIT);
	g_string_free(s, TRUE);

	/* A folded Content-Type, the boundary on a continuation line. */
	s = g_string_new(NULL);
	for (int i = 0; i < SG_MIME_MAX_DEPTH; i++)
		g_string_append_printf(s, "Content-Type: multipart/mixed;\r\n"
		    "\tboundary=\"n%d\"\r\n\r\n--n%d\r\n", i, i);
	assert_int_equal(prescan(s), SG_ELIMIT);
	g_string_free(s, TRUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_part_count),
		cmocka_unit_test(test_depth),
	};

	g_mime_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
