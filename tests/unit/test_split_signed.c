/* The multipart/signed splitter (sg_split_signed): exactly which bytes are
 * verified as the signed part and which are read as the signature. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "inbound.h"

/* In a case's text, \001 and \002 mark where the signed part starts and
 * ends, \003 and \004 the signature part; they are removed to give the
 * body. A case that does not split has no marks. */
#define B1 "\001"
#define E1 "\002"
#define B2 "\003"
#define E2 "\004"

static const struct {
	const char *name;
	const char *boundary;
	const char *text;
	bool ok;
} cases[] = {
	{ "CRLF", "b",
	  "--b\r\n" B1 "Content-Type: text/plain\r\n\r\nhello" E1 "\r\n"
	  "--b\r\n" B2 "Content-Type: application/pgp-signature\r\n\r\nSIG\r\n"
	  E2 "--b--\r\n", true },
	{ "LF", "b",
	  "--b\n" B1 "Content-Type: text/plain\n\nhello" E1 "\n"
	  "--b\n" B2 "\nSIG\n" E2 "--b--\n", true },
	{ "LF, CRLF in the content", "b",
	  "--b\n" B1 "\nline\r\nhello" E1 "\n--b\n" B2 "SIG\n" E2 "--b--\n",
	  true },
	{ "only the last line break belongs to the delimiter", "b",
	  "--b\r\n" B1 "\r\nhello\r\n\r\n" E1 "\r\n--b\r\n" B2 "SIG\r\n" E2
	  "--b--\r\n", true },
	{ "transport padding after each delimiter", "b",
	  "--b \t \r\n" B1 "\r\nhello" E1 "\r\n--b\t\r\n" B2 "SIG\r\n" E2
	  "--b-- \t\r\n", true },
	{ "padding with LF", "b",
	  "--b  \n" B1 "\nhello" E1 "\n--b \n" B2 "SIG\n" E2 "--b--\t\n",
	  true },
	{ "preamble and epilogue", "b",
	  "This is an OpenPGP/MIME signed message.\r\n--b is not here\r\n"
	  "\r\n--b\r\n" B1 "\r\nhello" E1 "\r\n--b\r\n" B2 "SIG\r\n" E2
	  "--b--\r\nepilogue\r\n--b\r\n--b--\r\n", true },
	{ "close delimiter ends the data", "b",
	  "--b\r\n" B1 "\r\nhello" E1 "\r\n--b\r\n" B2 "SIG\r\n" E2 "--b--",
	  true },
	{ "the boundary inside the content, not a delimiter", "b",
	  "--b\r\n" B1 "\r\nx--b\r\n --b\r\n--bb\r\n--b-\r\n--b--x\r\n"
	  "--b x\r\n-- b\r\n--B\r\nend" E1 "\r\n--b\r\n" B2 "SIG\r\n" E2
	  "--b--\r\n", true },
	{ "empty signed part", "b",
	  "--b\r\n" B1 E1 "\r\n--b\r\n" B2 "SIG\r\n" E2 "--b--\r\n", true },
	{ "empty signed part, no line between", "b",
	  "--b\r\n" B1 E1 "--b\r\n" B2 "SIG\r\n" E2 "--b--\r\n", true },
	{ "both parts empty", "b",
	  "--b\r\n" B1 E1 "--b\r\n" B2 E2 "--b--\r\n", true },
	{ "a part of one line break", "b",
	  "--b\r\n" B1 "\r\n" E1 "\r\n--b\r\n" B2 "\r\n" E2 "--b--\r\n", true },
	{ "nested multipart, inner boundary a prefix of the outer", "outer-b",
	  "--outer-b\r\n" B1 "Content-Type: multipart/mixed; boundary=outer\r\n"
	  "\r\n--outer\r\n\r\none\r\n--outer\r\n\r\ntwo\r\n--outer--\r\n" E1
	  "\r\n--outer-b\r\n" B2 "SIG\r\n" E2 "--outer-b--\r\n", true },
	{ "nested multipart, outer boundary a prefix of the inner", "b",
	  "--b\r\n" B1 "Content-Type: multipart/mixed; boundary=b1\r\n"
	  "\r\n--b1\r\n\r\none\r\n--b1--\r\n" E1 "\r\n--b\r\n" B2 "SIG\r\n" E2
	  "--b--\r\n", true },
	{ "boundary of 70 characters", "0123456789012345678901234567890123456"
	  "789012345678901234567890123456789",
	  "--0123456789012345678901234567890123456789012345678901234567890123"
	  "456789\r\n" B1 "\r\nhello" E1 "\r\n--012345678901234567890123456789"
	  "0123456789012345678901234567890123456789\r\n" B2 "SIG\r\n" E2
	  "--0123456789012345678901234567890123456789012345678901234567890123"
	  "456789--\r\n", true },
	{ "boundary with the characters RFC 2046 allows", "'()+_,-./:=? x",
	  "--'()+_,-./:=? x\r\n" B1 "\r\nhello" E1 "\r\n--'()+_,-./:=? x\r\n"
	  B2 "SIG\r\n" E2 "--'()+_,-./:=? x--\r\n", true },
	{ "content ending in CR", "b",
	  "--b\r\n" B1 "\r\nhello\r" E1 "\r\n--b\r\n" B2 "SIG\r\n" E2
	  "--b--\r\n", true },
	{ "CR ending the data after the close delimiter", "b",
	  "--b\r\n" B1 "\r\nhello" E1 "\r\n--b\r\n" B2 "SIG\r\n" E2
	  "--b--\r", true },
	/* A CR without LF after a delimiter: GMime reads the line as
	 * content, Python's email as a delimiter and a next line. Either
	 * way one reader would show what another verified differently. */
	{ "CR without LF after the second delimiter", "b",
	  "--b\r\n\r\nhello\r\n--b\rshown, not signed\r\n\r\nSIG\r\n"
	  "--b--\r\n", false },
	{ "CR without LF after the first delimiter", "b",
	  "--b\rContent-Type: text/plain\r\n\r\nshown, not signed\r\n"
	  "--b\r\n\r\nhello\r\n--b\r\nSIG\r\n--b--\r\n", false },
	{ "CR without LF after the close delimiter", "b",
	  "--b\r\n\r\nhello\r\n--b\r\nSIG\r\n--b--\rshown\r\n", false },
	{ "CR without LF after padding", "b",
	  "--b\r\n\r\nhello\r\n--b \t\rshown\r\n\r\nSIG\r\n--b--\r\n",
	  false },
	/* Not exactly two parts and a close delimiter. */
	{ "no close delimiter", "b",
	  "--b\r\n\r\nhello\r\n--b\r\nSIG\r\n", false },
	{ "no close delimiter, the data ends in a delimiter", "b",
	  "--b\r\n\r\nhello\r\n--b\r\nSIG\r\n--b", false },
	{ "one part", "b", "--b\r\n\r\nhello\r\n--b--\r\n", false },
	{ "one part, a close delimiter in the epilogue", "b",
	  "--b\r\n\r\nhello\r\n--b--\r\nSIG\r\n--b--\r\n", false },
	{ "three parts", "b",
	  "--b\r\n\r\nhello\r\n--b\r\nSIG\r\n--b\r\nmore\r\n--b--\r\n", false },
	{ "no part", "b", "preamble\r\n--b--\r\n", false },
	{ "no delimiter", "b", "hello\r\n", false },
	{ "empty body", "b", "", false },
	{ "other boundary", "b",
	  "--c\r\n\r\nhello\r\n--c\r\nSIG\r\n--c--\r\n", false },
	{ "a longer boundary only", "b",
	  "--bb\r\n\r\nhello\r\n--bb\r\nSIG\r\n--bb--\r\n", false },
	{ "open delimiter at the end of the data", "b", "--b", false },
	/* An inner boundary that is the outer one followed by "--" makes an
	 * inner delimiter the outer close delimiter (RFC 2046 forbids such
	 * a boundary): refused, not split elsewhere. */
	{ "inner delimiter that is the outer close delimiter", "b",
	  "--b\r\nContent-Type: multipart/mixed; boundary=\"b--\"\r\n\r\n"
	  "--b--\r\n\r\none\r\n--b----\r\n\r\n--b\r\nSIG\r\n--b--\r\n", false },
};

/* Removes the marks from text; off[i] receives the position of mark i+1
 * (-1 when absent). (transfer full) */
static GByteArray *
unmark(const char *text, long off[4])
{
	GByteArray *out = g_byte_array_new();

	for (int i = 0; i < 4; i++)
		off[i] = -1;
	for (const char *p = text; *p; p++) {
		if (*p >= 1 && *p <= 4)
			off[*p - 1] = (long)out->len;
		else
			g_byte_array_append(out, (const guint8 *)p, 1);
	}
	return out;
}

/* sg_split_signed on len bytes of data that follow a header of pad
 * bytes in one stream: the offsets are counted from the body's start. */
static bool
split(const guint8 *data, size_t len, size_t pad, const char *boundary,
      struct sg_signed_parts *out)
{
	GByteArray *all = g_byte_array_sized_new((guint)(pad + len));
	GMimeStream *s, *body;
	bool ok;

	for (size_t i = 0; i < pad; i++)
		g_byte_array_append(all, (const guint8 *)"H", 1);
	g_byte_array_append(all, data, (guint)len);
	s = g_mime_stream_mem_new_with_byte_array(all);
	body = g_mime_stream_substream(s, (gint64)pad, (gint64)(pad + len));
	ok = sg_split_signed(body, boundary, out);
	g_object_unref(body);
	g_object_unref(s);
	return ok;
}

static void
check_case(size_t i, size_t pad)
{
	long off[4];
	GByteArray *body = unmark(cases[i].text, off);
	struct sg_signed_parts parts = { -1, -1, -1, -1 };
	bool ok;

	ok = split(body->data, body->len, pad, cases[i].boundary, &parts);
	if (ok != cases[i].ok)
		fail_msg("%s: split %d, want %d", cases[i].name, ok, cases[i].ok);
	if (ok && (parts.p1 != off[0] || parts.l1 != off[1] - off[0] ||
	    parts.p2 != off[2] || parts.l2 != off[3] - off[2]))
		fail_msg("%s: signed part [%ld, +%ld), signature [%ld, +%ld); "
		    "want [%ld, +%ld), [%ld, +%ld)", cases[i].name,
		    (long)parts.p1, (long)parts.l1, (long)parts.p2,
		    (long)parts.l2, off[0], off[1] - off[0], off[2],
		    off[3] - off[2]);
	g_byte_array_free(body, TRUE);
}

static void
test_split_cases(void **state)
{
	(void)state;
	/* RFC 2046's longest boundary. */
	assert_int_equal(strlen(cases[15].boundary), 70);
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		check_case(i, 0);
		check_case(i, 7);
	}
}

/* The splitter reads no byte outside the body: each case cut at every
 * length, the parts inside what is left. */
static void
test_split_truncated(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		long off[4];
		GByteArray *body = unmark(cases[i].text, off);

		for (guint n = 0; n <= body->len; n++) {
			struct sg_signed_parts parts;

			if (split(body->data, n, 3, cases[i].boundary, &parts)) {
				assert_true(parts.p1 >= 0 && parts.l1 >= 0 &&
				    parts.p1 + parts.l1 <= (gint64)n);
				assert_true(parts.p2 >= 0 && parts.l2 >= 0 &&
				    parts.p2 + parts.l2 <= (gint64)n);
				assert_true(parts.p1 + parts.l1 <= parts.p2);
			}
		}
		g_byte_array_free(body, TRUE);
	}
}

/* The body is read in pieces of 64 KiB: delimiter lines, their CRLF and
 * an ambiguous CR split across two pieces change nothing. */
static void
test_split_across_reads(void **state)
{
	(void)state;
	for (size_t shift = 65536 - 12; shift <= 65536 + 2; shift++) {
		GString *t = g_string_new("--b\r\n");
		struct sg_signed_parts parts;
		size_t p1 = t->len, e1;

		while (t->len < shift)
			g_string_append_c(t, 'x');
		e1 = t->len;
		g_string_append(t, "\r\n--b\r\nSIG\r\n--b--\r\n");
		assert_true(split((const guint8 *)t->str, t->len, 0, "b", &parts));
		assert_int_equal(parts.p1, p1);
		assert_int_equal(parts.l1, e1 - p1);
		assert_int_equal(parts.p2, e1 + 7);
		assert_int_equal(parts.l2, 5);
		g_string_truncate(t, e1);
		g_string_append(t, "\r\n--b\rshown\r\nSIG\r\n--b--\r\n");
		assert_false(split((const guint8 *)t->str, t->len, 0, "b", &parts));
		g_string_free(t, TRUE);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_cases),
		cmocka_unit_test(test_split_truncated),
		cmocka_unit_test(test_split_across_reads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
