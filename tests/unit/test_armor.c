/* The strict armor reader (crypto/openpgp_armor.c) against a reference
 * that reads the whole text line by line: the same verdict and the same
 * packets for curated cases and for thousands of mutations of a real
 * armor, whether the text comes at once (sg_openpgp_binary,
 * sg_pgp_dearmor_whole) or in pieces of any size (sg_openpgp_reader).
 * One difference is intended: binary data after white space is refused
 * (packets never start with white space). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "openpgp_packet.h"
#include "sealgate/openpgp.h"

#define ARMOR_BEGIN "-----BEGIN PGP MESSAGE-----"
#define ARMOR_END "-----END PGP MESSAGE-----"

/* The reference: the whole text, line by line. */

/* The line at p without its line end and trailing blanks (a no-break
 * space too, in UTF-8 or Latin-1: mail programs put one on the empty line
 * after the armor headers); *next is the start of the following line. */
static size_t
armor_line(const char *p, const char *end, const char **next)
{
	const unsigned char *u = (const unsigned char *)p;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	size_t l = (size_t)((nl != NULL ? nl : end) - p);

	*next = nl != NULL ? nl + 1 : end;
	while (l > 0) {
		if (u[l - 1] == '\r' || u[l - 1] == ' ' || u[l - 1] == '\t') {
			l--;
		} else if (u[l - 1] == 0xa0) {
			l -= l >= 2 && u[l - 2] == 0xc2 ? 2 : 1;
		} else {
			break;
		}
	}
	return l;
}

static bool
line_is(const char *p, size_t l, const char *what)
{
	return l == strlen(what) && memcmp(p, what, l) == 0;
}

/* Armor header lines ("Name: value") up to the empty line; at most
 * SG_PGP_MAX_ARMOR_HEADERS bytes of them. NULL when they are not. */
static const char *
armor_headers(const char *p, const char *end)
{
	size_t total = 0, l;
	const char *next, *colon;

	for (; p < end; p = next) {
		l = armor_line(p, end, &next);
		if (l == 0)
			return next;
		colon = memchr(p, ':', l);
		total += l;
		if (colon == NULL || colon == p || total > SG_PGP_MAX_ARMOR_HEADERS)
			return NULL;
		for (size_t i = 0; i < l; i++)
			if (!g_ascii_isprint(p[i]))
				return NULL;
	}
	return NULL;
}

static bool
base64_text(const char *p, size_t l)
{
	for (size_t i = 0; i < l; i++)
		if (!g_ascii_isalnum(p[i]) && p[i] != '+' && p[i] != '/' &&
		    p[i] != '=')
			return false;
	return true;
}

/* The base64 lines up to the END line, appended to b64; returns what
 * follows the END line, or NULL. */
static const char *
armor_body(const char *p, const char *end, GString *b64)
{
	bool closed = false;   /* after padding */
	bool crc = false;      /* after the checksum */
	const char *next, *eq;
	size_t l;

	for (; p < end; p = next) {
		l = armor_line(p, end, &next);
		if (line_is(p, l, ARMOR_END))
			return next;
		if (crc || l == 0 || !base64_text(p, l))
			return NULL;
		if (p[0] == '=') {      /* checksum: "=" and 4 base64 digits */
			if (l != 5 || memchr(p + 1, '=', 4) != NULL)
				return NULL;
			crc = true;
			continue;
		}
		if (closed)
			return NULL;
		eq = memchr(p, '=', l);
		if (eq != NULL) {
			/* padding: only at the end of the last line */
			if (eq < p + l - 2 || p[l - 1] != '=')
				return NULL;
			closed = true;
		}
		g_string_append_len(b64, p, (gssize)l);
	}
	return NULL;
}

static GByteArray *
ref_dearmor_whole(const void *data, size_t len)
{
	const char *p = data, *end = p + len, *next;
	GString *b64 = g_string_new(NULL);
	GByteArray *out = NULL;
	gsize n = 0;

	while (p < end && g_ascii_isspace(*p))
		p++;
	if (p >= end || !line_is(p, armor_line(p, end, &next), ARMOR_BEGIN))
		goto out;
	p = armor_headers(next, end);
	if (p != NULL)
		p = armor_body(p, end, b64);
	if (p == NULL || b64->len == 0 || b64->len % 4 != 0)
		goto out;
	for (; p < end; p++)
		if (!g_ascii_isspace(*p))
			goto out;
	if (g_base64_decode_inplace(b64->str, &n) == NULL || n == 0)
		goto out;
	out = g_byte_array_new();
	g_byte_array_append(out, (const guint8 *)b64->str, (guint)n);
out:
	g_string_free(b64, TRUE);
	return out;
}

static GByteArray *
ref_binary(const void *data, size_t len)
{
	const char *p = data, *end = p + len;
	GByteArray *out;

	while (p < end && g_ascii_isspace(*p))
		p++;
	if (p < end && *p == '-')
		return ref_dearmor_whole(data, len);
	if (p != data)
		return NULL;    /* the intended difference (see above) */
	out = g_byte_array_new();
	g_byte_array_append(out, data, (guint)len);
	return out;
}

/* A reader that hands out the text in pieces of 1 to step bytes. */
struct pieces {
	const guint8 *p;
	size_t len, pos, step;
	guint32 seed;
};

static int
pieces_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct pieces *pc = ctx;
	size_t n;

	pc->seed = pc->seed * 1103515245u + 12345u;
	n = MIN(MIN(len, pc->len - pc->pos), 1 + (pc->seed >> 8) % pc->step);
	memcpy(buf, pc->p + pc->pos, n);
	pc->pos += n;
	*nread = n;
	return SG_OK;
}

/* sg_openpgp_reader over data in pieces: the packets, or NULL when it
 * reported malformed armor. */
static GByteArray *
streamed(const guint8 *data, size_t len, size_t step, guint32 seed)
{
	struct pieces pc = { data, len, 0, step, seed };
	struct sg_reader in = { pieces_read, &pc };
	struct sg_openpgp_reader *r = sg_openpgp_reader_new(&in);
	GByteArray *out = g_byte_array_new();
	guint8 buf[777];
	size_t n;
	int rc;

	while ((rc = sg_openpgp_reader_read(r, buf, sizeof(buf), &n)) == 0 && n > 0)
		g_byte_array_append(out, buf, (guint)n);
	sg_openpgp_reader_free(r);
	if (rc == SG_EMALFORMED) {
		g_byte_array_free(out, TRUE);
		return NULL;
	}
	assert_int_equal(rc, 0);
	return out;
}

static bool
same(const GByteArray *a, const GByteArray *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return a->len == b->len && (a->len == 0 ||
	    memcmp(a->data, b->data, a->len) == 0);
}

static void
free_array(GByteArray *a)
{
	if (a != NULL)
		g_byte_array_free(a, TRUE);
}

/* Every way of reading data agrees with the reference. */
static void
check(const guint8 *data, size_t len, const char *what)
{
	GByteArray *want = ref_binary(data, len), *got;
	GByteArray *want_armor = ref_dearmor_whole(data, len);

	got = sg_openpgp_binary(data, len);
	if (!same(got, want))
		fail_msg("%s: sg_openpgp_binary %s, reference %s", what,
		    got ? "decodes" : "refuses", want ? "decodes" : "refuses");
	free_array(got);
	got = sg_pgp_dearmor_whole(data, len);
	if (!same(got, want_armor))
		fail_msg("%s: sg_pgp_dearmor_whole disagrees", what);
	free_array(got);
	for (size_t step = 1; step <= 4096; step *= 8) {
		got = streamed(data, len, step, (guint32)(len + step));
		if (!same(got, want))
			fail_msg("%s: read in pieces of up to %zu bytes, %s", what,
			    step, got ? "decodes" : "refuses");
		free_array(got);
	}
	free_array(want);
	free_array(want_armor);
}

static void
check_text(const char *text)
{
	check((const guint8 *)text, strlen(text), text);
}

/* PKESK SEIPD as base64. */
#define B64 "hAoDAQIDBAUGBwgB0gUBqrvM3Q=="

static void
test_cases(void **state)
{
	static const char *const cases[] = {
		ARMOR_BEGIN "\n\n" B64 "\n" ARMOR_END "\n",
		"\r\n  " ARMOR_BEGIN "\r\nVersion: GnuPG v2\r\n\r\n" B64
		"\r\n=njUN\r\n" ARMOR_END "\r\n\r\n",
		ARMOR_BEGIN "\n\n" B64 "\n" ARMOR_END,
		ARMOR_BEGIN "  \t\r\n\n" B64 "  \n" ARMOR_END " \r\n",
		ARMOR_BEGIN "\n\xc2\xa0\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\xa0\xa0 \xc2\xa0\r\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\xc2\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\xc2\xc2\xa0\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\xc2\xa0secret\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\xc2\xa0\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\xc2\n" ARMOR_END "\n",
		"secret\n" ARMOR_BEGIN "\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n" ARMOR_END "\nsecret\n",
		ARMOR_BEGIN "\n\n" B64 "\n" ARMOR_END "\n\xa0",
		ARMOR_BEGIN "\n\n" B64 "\nsecret words\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n=njUN\nhAMD\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n=njUN\n=njUN\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n=nj=N\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n=njUNx\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAoDAQIDBAUGBwgB\n0gUBqrvM3Q==\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAoDAQIDBAUGBwgB0gUBqrvM3Q=\n=\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAoDAQIDBAUGBwgB0gUBqrvM3=Q=\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAoDAQIDBAUGBwgB0gUBqrvM3Q===\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAoDAQIDBAUGBwgB0gUBqrvM3Q==\nhAMD\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAoDAQIDBAUGBwgB0gUBqrvM3Q\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAoD AQIDBAUGBwgB0gUBqrvM3Q==\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n hAoDAQIDBAUGBwgB0gUBqrvM3Q==\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n\n" ARMOR_END "\n",
		ARMOR_BEGIN "\nsecret text\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n: value\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\nName:\tvalue\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\nName: value \n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n",
		ARMOR_BEGIN "\n\n",
		ARMOR_BEGIN,
		ARMOR_BEGIN "\n",
		"-----BEGIN PGP SIGNED MESSAGE-----\n\n" B64 "\n" ARMOR_END "\n",
		" " ARMOR_BEGIN "x\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\r\r\n\n" B64 "\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n====\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\nhAo\n" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n-" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n" ARMOR_END "\r",
		ARMOR_BEGIN "\n\n" B64 "\r" ARMOR_END "\n",
		ARMOR_BEGIN "\n\n" B64 "\n" ARMOR_END "\v\n",
		"", " ", "\n\n", "x", "\x84\x0a", " \x84\x0a", "-", "-\n",
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
		check_text(cases[i]);
}

/* Headers of up to SG_PGP_MAX_ARMOR_HEADERS bytes; long lines. */
static void
test_lengths(void **state)
{
	(void)state;
	for (size_t n = SG_PGP_MAX_ARMOR_HEADERS - 8; n <= SG_PGP_MAX_ARMOR_HEADERS + 8;
	    n++) {
		GString *t = g_string_new(ARMOR_BEGIN "\nComment: ");

		while (t->len < strlen(ARMOR_BEGIN "\n") + n)
			g_string_append_c(t, 'x');
		g_string_append(t, "\n\n" B64 "\n" ARMOR_END "\n");
		check((const guint8 *)t->str, t->len, "long header");
		g_string_free(t, TRUE);
	}
	for (size_t n = 500; n <= 530; n++) {
		GString *t = g_string_new(ARMOR_BEGIN);

		for (size_t i = 0; i < n; i++)
			g_string_append_c(t, " \t\r"[i % 3]);
		g_string_append(t, "\n\n" B64);
		for (size_t i = 0; i < n; i++)
			g_string_append_c(t, ' ');
		g_string_append(t, "\n" ARMOR_END);
		for (size_t i = 0; i < n; i++)
			g_string_append(t, "\xc2\xa0");
		g_string_append(t, "\n");
		check((const guint8 *)t->str, t->len, "long blank runs");
		g_string_free(t, TRUE);
	}
}

/* A real armor of about 100 KiB in lines of 64 and in one line, and
 * 20,000 mutations of a small one: one byte replaced, inserted or removed,
 * from the bytes that matter to the reader. */
static void
test_mutations(void **state)
{
	static const guint8 alphabet[] = { ' ', '\t', '\r', '\n', 0xa0, 0xc2,
		'=', '-', 'A', '+', ':', '\v', 0x00, 'E' };
	GString *b64 = g_string_new(NULL), *t;
	guint8 raw[75000];
	char *enc;
	guint32 seed = 42;

	(void)state;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (guint8)(i * 131 + 7);
	enc = g_base64_encode(raw, sizeof(raw));
	for (size_t i = 0, n = strlen(enc); i < n; i += 64)
		g_string_append_printf(b64, "%.64s\r\n", enc + i);
	t = g_string_new(ARMOR_BEGIN "\r\nVersion: x\r\n\r\n");
	g_string_append(t, b64->str);
	g_string_append(t, "=AbCd\r\n" ARMOR_END "\r\n");
	check((const guint8 *)t->str, t->len, "100 KiB armor");
	g_string_free(t, TRUE);
	t = g_string_new(ARMOR_BEGIN "\n\n");
	g_string_append(t, enc);
	g_string_append(t, "\n" ARMOR_END "\n");
	check((const guint8 *)t->str, t->len, "100 KiB in one line");
	g_string_free(t, TRUE);
	g_free(enc);
	g_string_free(b64, TRUE);

	for (int k = 0; k < 20000; k++) {
		GByteArray *m = g_byte_array_new();
		const char *base = ARMOR_BEGIN "\r\nVersion: 1\r\n\r\n"
		    "hAoDAQIDBAUGBwgB\r\n0gUBqrvM3Q==\r\n=njUN\r\n" ARMOR_END "\r\n";
		size_t pos;
		guint8 c;

		g_byte_array_append(m, (const guint8 *)base, (guint)strlen(base));
		for (int edits = 0; edits < 1 + k % 3; edits++) {
			seed = seed * 1103515245u + 12345u;
			pos = (seed >> 8) % (m->len + 1);
			seed = seed * 1103515245u + 12345u;
			c = alphabet[(seed >> 8) % sizeof(alphabet)];
			switch ((seed >> 20) % 3) {
			case 0:
				if (pos < m->len)
					m->data[pos] = c;
				break;
			case 1:
				g_byte_array_set_size(m, m->len + 1);
				memmove(m->data + pos + 1, m->data + pos,
				    m->len - 1 - pos);
				m->data[pos] = c;
				break;
			default:
				if (pos < m->len)
					g_byte_array_remove_index(m, pos);
				break;
			}
		}
		check(m->data, m->len, "mutation");
		g_byte_array_free(m, TRUE);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
