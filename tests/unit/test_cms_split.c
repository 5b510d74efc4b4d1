/* A CMS object split into its skeleton and its content (sg_cms_split,
 * crypto/cms_split.c): the skeleton is the object without the content,
 * re-encoded with definite lengths around it, the rest as it was; the
 * content is read back from the spool chunk by chunk, whatever BER made
 * of it. Objects are built by hand here, in DER and in the BER mail
 * programs write (indefinite lengths, OCTET STRING chunks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sealgate/spool.h"
#include "smime_int.h"

/* Building BER ------------------------------------------------------- */

static GByteArray *
tlv(guint8 id, const GByteArray *content)
{
	GByteArray *out = g_byte_array_new();
	guint8 h[6];
	size_t n = 0, len = content->len;

	h[n++] = id;
	if (len < 0x80) {
		h[n++] = (guint8)len;
	} else if (len < 0x10000) {
		h[n++] = 0x82;
		h[n++] = (guint8)(len >> 8);
		h[n++] = (guint8)len;
	} else {
		h[n++] = 0x84;
		h[n++] = (guint8)(len >> 24);
		h[n++] = (guint8)(len >> 16);
		h[n++] = (guint8)(len >> 8);
		h[n++] = (guint8)len;
	}
	g_byte_array_append(out, h, (guint)n);
	g_byte_array_append(out, content->data, content->len);
	return out;
}

/* Indefinite length: id 0x80, the content, end-of-contents. */
static GByteArray *
indef(guint8 id, const GByteArray *content)
{
	GByteArray *out = g_byte_array_new();
	guint8 h[2] = { id, 0x80 };

	g_byte_array_append(out, h, 2);
	g_byte_array_append(out, content->data, content->len);
	g_byte_array_append(out, (const guint8 *)"\0\0", 2);
	return out;
}

static GByteArray *
bytes(const void *p, size_t n)
{
	GByteArray *b = g_byte_array_new();

	g_byte_array_append(b, p, (guint)n);
	return b;
}

/* Concatenates and frees its arguments (NULL-terminated). */
static GByteArray *
cat(GByteArray *first, ...)
{
	GByteArray *out = g_byte_array_new(), *b;
	va_list ap;

	va_start(ap, first);
	for (b = first; b != NULL; b = va_arg(ap, GByteArray *)) {
		g_byte_array_append(out, b->data, b->len);
		g_byte_array_free(b, TRUE);
	}
	va_end(ap);
	return out;
}

/* tlv or indef of a fresh content, freed. */
static GByteArray *
wrap(guint8 id, bool indefinite, GByteArray *content)
{
	GByteArray *out = indefinite ? indef(id, content) : tlv(id, content);

	g_byte_array_free(content, TRUE);
	return out;
}

static const guint8 OID_ENV[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
	0x0d, 0x01, 0x07, 0x03 };
static const guint8 OID_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
	0x0d, 0x01, 0x07, 0x01 };
static const guint8 VERSION[] = { 0x02, 0x01, 0x00 };
static const guint8 RINFOS[] = { 0x31, 0x03, 0x02, 0x01, 0x07 };
static const guint8 ALG[] = { 0x30, 0x04, 0x06, 0x02, 0x2a, 0x03 };
static const guint8 ATTRS[] = { 0xa1, 0x02, 0x05, 0x00 };

/* ContentInfo { envelopedData, [0] { EnvelopedData { version, SET,
 * EncryptedContentInfo { data, alg, content }, [1] } } }; content is the
 * encoded [0] element, or NULL for none. */
static GByteArray *
enveloped(bool indefinite, GByteArray *content)
{
	GByteArray *eci = cat(bytes(OID_DATA, sizeof(OID_DATA)),
	    bytes(ALG, sizeof(ALG)), content, NULL);
	GByteArray *env = cat(bytes(VERSION, sizeof(VERSION)),
	    bytes(RINFOS, sizeof(RINFOS)), wrap(0x30, indefinite, eci),
	    bytes(ATTRS, sizeof(ATTRS)), NULL);

	return wrap(0x30, indefinite, cat(bytes(OID_ENV, sizeof(OID_ENV)),
	    wrap(0xa0, indefinite, wrap(0x30, indefinite, env)), NULL));
}

/* An OCTET STRING chunk. */
static GByteArray *
chunk(const char *s)
{
	GByteArray *c = bytes(s, strlen(s));

	return wrap(0x04, false, c);
}

/* Splitting ------------------------------------------------------------ */

static struct sg_spool *
spool_of(const GByteArray *b, bool on_disk)
{
	struct sg_spool *sp;

	assert_int_equal(sg_spool_new("/tmp", on_disk ? 0 : 1 << 30, &sp), 0);
	assert_int_equal(sg_spool_write(sp, b->data, b->len), 0);
	return sp;
}

/* The content read back in reads of at most step bytes. */
static GByteArray *
read_content(const struct sg_cms_content *c, size_t step)
{
	struct sg_cms_reader *r = sg_cms_reader_new(c);
	GByteArray *out = g_byte_array_new();
	guint8 buf[4096];
	size_t n;

	while (sg_cms_reader_read(r, buf, MIN(step, sizeof(buf)), &n) == 0 && n > 0)
		g_byte_array_append(out, buf, (guint)n);
	assert_false(sg_cms_reader_io_error(r));
	sg_cms_reader_free(r);
	return out;
}

/* Splits obj (also from a file) and checks the skeleton and the content
 * read back; SG_EMALFORMED expected when want_content is NULL. */
static void
check_split(const char *name, GByteArray *obj, bool explicit_content,
	    const GByteArray *want_skel, const char *want_content)
{
	for (int disk = 0; disk < 2; disk++) {
		struct sg_spool *sp = spool_of(obj, disk);
		struct sg_err err = { 0 };
		struct sg_cms_content c;
		struct sg_source src;
		GByteArray *skel = NULL, *content;
		int rc;

		sg_spool_source(sp, &src);
		rc = sg_cms_split(&src, explicit_content, &skel, &c, &err);

		if (want_content == NULL) {
			if (rc != SG_EMALFORMED)
				fail_msg("%s: split %d, want malformed", name, rc);
			sg_spool_free(sp);
			continue;
		}
		if (rc != 0)
			fail_msg("%s: split %d (%s)", name, rc, err.msg);
		if (want_skel != NULL && (skel->len != want_skel->len ||
		    memcmp(skel->data, want_skel->data, skel->len) != 0))
			fail_msg("%s: skeleton of %u bytes differs", name, skel->len);
		for (size_t step = 1; step <= 4096; step *= 64) {
			content = read_content(&c, step);
			if (content->len != strlen(want_content) ||
			    (content->len > 0 && memcmp(content->data,
			    want_content, content->len) != 0))
				fail_msg("%s: content \"%.*s\"", name, (int)content->len,
				    (const char *)content->data);
			g_byte_array_free(content, TRUE);
		}
		g_byte_array_free(skel, TRUE);
		sg_spool_free(sp);
	}
	g_byte_array_free(obj, TRUE);
}

static void
test_enveloped(void **state)
{
	/* The skeleton is the DER of the object without its content. */
	GByteArray *skel = enveloped(false, g_byte_array_new());

	(void)state;
	check_split("DER, primitive content",
	    enveloped(false, wrap(0x80, false, bytes("hello world", 11))), false,
	    skel, "hello world");
	check_split("BER, indefinite, chunks", enveloped(true, wrap(0xa0, true,
	    cat(chunk("hel"), chunk("lo "), chunk("world"), NULL))), false, skel,
	    "hello world");
	check_split("definite chunks", enveloped(false, wrap(0xa0, false,
	    cat(chunk("hello"), chunk(" world"), NULL))), false, skel,
	    "hello world");
	check_split("nested and empty chunks", enveloped(true, wrap(0xa0, true,
	    cat(wrap(0x24, true, cat(chunk("a"), chunk(""), NULL)),
	    wrap(0x24, false, cat(chunk("b"), NULL)), chunk("c"), NULL))), false,
	    skel, "abc");
	check_split("empty content", enveloped(false, wrap(0x80, false,
	    g_byte_array_new())), false, skel, "");
	/* Bytes after the object are not read. */
	check_split("trailing bytes", cat(enveloped(false, wrap(0x80, false,
	    bytes("x", 1))), bytes("\x05\x00junk", 6), NULL), false, skel, "x");
	g_byte_array_free(skel, TRUE);
}

static void
test_malformed(void **state)
{
	GByteArray *deep = chunk("x");

	(void)state;
	check_split("no content", enveloped(false, g_byte_array_new()), false,
	    NULL, NULL);
	check_split("a chunk that is no OCTET STRING", enveloped(true,
	    wrap(0xa0, true, cat(chunk("a"), bytes(VERSION, sizeof(VERSION)),
	    NULL))), false, NULL, NULL);
	check_split("no end-of-contents", cat(bytes("\x30\x80", 2),
	    bytes(OID_ENV, sizeof(OID_ENV)), NULL), false, NULL, NULL);
	for (int i = 0; i < 40; i++)
		deep = wrap(0x24, true, deep);
	check_split("chunks nested too deep", enveloped(true, wrap(0xa0, true,
	    deep)), false, NULL, NULL);
	check_split("high tag number", bytes("\x1f\x81\x01\x00", 4), false, NULL,
	    NULL);
	check_split("not a SEQUENCE", bytes("\x04\x00", 2), false, NULL, NULL);
	check_split("empty", g_byte_array_new(), false, NULL, NULL);
	check_split("length longer than eight bytes",
	    bytes("\x30\x89\x01\x00\x00\x00\x00\x00\x00\x00\x00", 11), false,
	    NULL, NULL);
}

/* Every cut of an object: malformed or (cut after the object's end) the
 * same, never a read outside. */
static void
test_truncated(void **state)
{
	GByteArray *obj = enveloped(true, wrap(0xa0, true,
	    cat(chunk("hel"), chunk("lo"), NULL)));

	(void)state;
	for (guint n = 0; n < obj->len; n++)
		check_split("cut", bytes(obj->data, n), false, NULL, NULL);
	check_split("whole", obj, false, NULL, "hello");
}

/* Signed-data: [0] EXPLICIT around the eContent OCTET STRING. */
static GByteArray *
signed_data(bool indefinite, GByteArray *econtent)
{
	GByteArray *encap = cat(bytes(OID_DATA, sizeof(OID_DATA)), econtent,
	    NULL);
	GByteArray *sd = cat(bytes(VERSION, sizeof(VERSION)),
	    bytes(RINFOS, sizeof(RINFOS)), wrap(0x30, indefinite, encap),
	    bytes(RINFOS, sizeof(RINFOS)), NULL);

	return wrap(0x30, false, cat(bytes(OID_ENV, sizeof(OID_ENV)),
	    wrap(0xa0, false, wrap(0x30, indefinite, sd)), NULL));
}

static void
test_signed_data(void **state)
{
	/* The skeleton's encapContentInfo has lost its [0]. */
	GByteArray *skel = signed_data(false, g_byte_array_new());

	(void)state;
	check_split("eContent", signed_data(false, wrap(0xa0, false,
	    chunk("signed"))), true, skel, "signed");
	check_split("eContent in chunks", signed_data(true, wrap(0xa0, true,
	    wrap(0x24, true, cat(chunk("sig"), chunk("ned"), NULL)))), true, skel,
	    "signed");
	check_split("more than the OCTET STRING in the [0]", signed_data(false,
	    wrap(0xa0, false, cat(chunk("signed"), chunk("x"), NULL))), true,
	    NULL, NULL);
	check_split("more than the OCTET STRING in an indefinite [0]",
	    signed_data(true, wrap(0xa0, true, cat(chunk("signed"), chunk("x"),
	    NULL))), true, NULL, NULL);
	check_split("[0] without OCTET STRING", signed_data(false, wrap(0xa0,
	    false, bytes(VERSION, sizeof(VERSION)))), true, NULL, NULL);
	g_byte_array_free(skel, TRUE);
}

/* Many small chunks across the reader's 64 KiB window: all of them, in
 * order. */
static void
test_many_chunks(void **state)
{
	GByteArray *chunks = g_byte_array_new();
	GString *want = g_string_new(NULL);
	char piece[8];

	(void)state;
	for (int i = 0; i < 60000; i++) {
		GByteArray *c;

		snprintf(piece, sizeof(piece), "%d,", i % 1000);
		c = chunk(piece);
		g_byte_array_append(chunks, c->data, c->len);
		g_byte_array_free(c, TRUE);
		g_string_append(want, piece);
	}
	check_split("60000 chunks", enveloped(true, wrap(0xa0, true, chunks)),
	    false, NULL, want->str);
	g_string_free(want, TRUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enveloped),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_signed_data),
		cmocka_unit_test(test_many_chunks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
