/* The MIME rewrite as data: the encrypted entity, the header edits, Bcc
 * detection, message inspection and the spool underneath. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "sealgate/mime.h"
#include "sealgate/msg.h"
#include "sealgate/rewrite.h"

/* A message from "Name: value" pairs (NULL-terminated) and a body. */
static struct sg_msg *
make_msg(const char *const *hdrs, const char *body, const char *const *rcpts)
{
	struct sg_msg *msg = NULL;

	assert_int_equal(sg_msg_new("/tmp", &msg), 0);
	for (; hdrs != NULL && *hdrs != NULL; hdrs += 2)
		assert_int_equal(sg_msg_add_header(msg, hdrs[0], hdrs[1]), 0);
	assert_int_equal(sg_msg_end_headers(msg), 0);
	assert_int_equal(sg_msg_add_body(msg, body, strlen(body)), 0);
	for (; rcpts != NULL && *rcpts != NULL; rcpts++)
		assert_int_equal(sg_msg_add_rcpt(msg, *rcpts, SG_CLASS_OPENPGP, NULL), 0);
	return msg;
}

static char *
edits_text(const struct sg_edits *ed)
{
	static const char *ops[] = { "add", "change", "delete" };
	GString *s = g_string_new(NULL);

	for (guint i = 0; i < ed->hdr->len; i++) {
		const struct sg_hdr_edit *e = g_ptr_array_index(ed->hdr, i);

		g_string_append_printf(s, "%s %s %u %s\n", ops[e->op], e->name,
		    e->index, e->value ? e->value : "-");
	}
	return g_string_free(s, FALSE);
}

static void
test_content_headers_move_inside(void **state)
{
	const char *hdrs[] = {
		"From", "alice@example.com",
		"Content-Type", "multipart/mixed;\n\tboundary=\"b1\"",
		"Subject", "hi",
		"Content-Transfer-Encoding", "7bit",
		"content-disposition", "inline",
		NULL,
	};
	struct sg_msg *msg = make_msg(hdrs, "body\n", NULL);
	GString *inner = sg_rewrite_content_headers(msg);

	(void)state;
	assert_string_equal(inner->str,
	    "Content-Type: multipart/mixed;\r\n\tboundary=\"b1\"\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "content-disposition: inline\r\n"
	    "\r\n");
	g_string_free(inner, TRUE);
	sg_msg_free(msg);
}

static void
test_header_edits(void **state)
{
	const char *hdrs[] = {
		"MIME-Version", "1.0",
		"Content-Type", "text/plain",
		"Content-Description", "one",
		"Content-Transfer-Encoding", "8bit",
		"Content-Description", "two",
		"X-Other", "kept",
		NULL,
	};
	struct sg_msg *msg = make_msg(hdrs, "x\n", NULL);
	struct sg_edits ed;
	char *text, *ctype = sg_mime_pgp_encrypted_type("B");
	char *want;

	(void)state;
	sg_edits_init(&ed);
	sg_rewrite_content_edits(msg, ctype, NULL, &ed);
	text = edits_text(&ed);
	want = g_strdup_printf(
	    "delete Content-Description 2 -\n"
	    "delete Content-Description 1 -\n"
	    "delete Content-Transfer-Encoding 1 -\n"
	    "change Content-Type 1 %s\n", ctype);
	assert_string_equal(text, want);
	g_free(text);
	g_free(want);
	g_free(ctype);
	sg_edits_clear(&ed);
	sg_msg_free(msg);
}

static void
test_header_edits_without_content_type(void **state)
{
	const char *hdrs[] = { "Subject", "plain RFC 822", NULL };
	const char *extra[] = { "Content-Transfer-Encoding", "base64", NULL };
	struct sg_msg *msg = make_msg(hdrs, "x\n", NULL);
	struct sg_edits ed;
	char *text, *want, *ctype = sg_mime_pgp_encrypted_type("B");

	(void)state;
	sg_edits_init(&ed);
	sg_rewrite_content_edits(msg, ctype, extra, &ed);
	text = edits_text(&ed);
	want = g_strdup_printf("add Content-Type 0 %s\n"
	    "add Content-Transfer-Encoding 0 base64\n"
	    "add MIME-Version 0 1.0\n", ctype);
	assert_string_equal(text, want);
	g_free(text);
	g_free(want);
	g_free(ctype);
	sg_edits_clear(&ed);
	sg_msg_free(msg);
}

static void
test_hidden_recipients(void **state)
{
	static const struct {
		const char *to, *cc, *rcpt;
		bool hidden;
	} cases[] = {
		{ "Carol <carol@partner.example>", NULL, "carol@partner.example", false },
		{ "CAROL@Partner.Example", NULL, "carol@partner.example", false },
		{ "a@x.example", "Dave <dave@partner.example>", "dave@partner.example", false },
		{ "team: carol@partner.example, d@x.example;", NULL,
		  "carol@partner.example", false },
		{ "a@x.example", NULL, "carol@partner.example", true },
		{ NULL, NULL, "carol@partner.example", true },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		const char *hdrs[7] = { NULL };
		const char *rcpts[] = { cases[i].rcpt, NULL };
		struct sg_msg *msg;
		int n = 0;

		if (cases[i].to != NULL) {
			hdrs[n++] = "To";
			hdrs[n++] = cases[i].to;
		}
		if (cases[i].cc != NULL) {
			hdrs[n++] = "Cc";
			hdrs[n++] = cases[i].cc;
		}
		msg = make_msg(hdrs, "x\n", rcpts);
		if (sg_rewrite_has_hidden_recipient(msg) != cases[i].hidden)
			fail_msg("case %zu: hidden should be %d", i, cases[i].hidden);
		sg_msg_free(msg);
	}
}

/* Runs sg_mime_inspect on a message given as text; the parsed message
 * comes back on success only, and is what the text says. */
static int
inspect(const char *text, struct sg_mime_info *info, struct sg_err *err)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer(text, strlen(text));
	GMimeMessage *parsed = NULL;
	int rc = sg_mime_inspect(s, info, &parsed, err);

	g_object_unref(s);
	assert_int_equal(parsed != NULL, rc == 0);
	if (parsed != NULL) {
		GMimeObject *top = g_mime_message_get_mime_part(parsed);

		assert_int_equal(sg_mime_protection_of(top), info->protection);
		/* Labels around content that is not encrypted. */
		assert_int_equal(sg_mime_encrypted_as(top), SG_PROT_NONE);
		g_object_unref(parsed);
	}
	return rc;
}

static void
test_inspect_protection(void **state)
{
	static const struct {
		const char *msg;
		enum sg_protection prot;
	} cases[] = {
		{ "Content-Type: text/plain\n\nhello\n", SG_PROT_NONE },
		{ "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"
		  " boundary=b\n\n--b\nContent-Type: application/pgp-encrypted\n\n"
		  "Version: 1\n--b\nContent-Type: application/octet-stream\n\nx\n--b--\n",
		  SG_PROT_PGP_MIME },
		{ "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\nAAA\n",
		  SG_PROT_SMIME },
		{ "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\n\nAAA\n",
		  SG_PROT_SMIME },
		{ "Content-Type: application/pkcs7-mime; smime-type=signed-data\n\nAAA\n",
		  SG_PROT_NONE },
		{ "Content-Type: text/plain\n\n-----BEGIN PGP MESSAGE-----\n\nhQ\n"
		  "-----END PGP MESSAGE-----\n", SG_PROT_PGP_INLINE },
		{ "Subject: no MIME at all\n\n-----BEGIN PGP MESSAGE-----\n\nhQ\n"
		  "-----END PGP MESSAGE-----\n", SG_PROT_PGP_INLINE },
		/* An encrypted part next to clear text is not whole-message protection. */
		{ "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
		  "Content-Type: text/plain\n\nclear\n--b\n"
		  "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\n\n"
		  "AAA\n--b--\n", SG_PROT_NONE },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct sg_mime_info info = { 0 };
		struct sg_err err = { 0 };

		assert_int_equal(inspect(cases[i].msg, &info, &err), 0);
		if (info.protection != cases[i].prot)
			fail_msg("case %zu: protection %d, want %d", i,
			    info.protection, cases[i].prot);
	}
}

static void
test_inspect_malformed(void **state)
{
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	GString *deep = g_string_new(NULL);

	(void)state;
	assert_int_equal(inspect("Content-Type: multipart/mixed\n\nx\n", &info,
	    &err), SG_EMALFORMED);
	assert_string_equal(err.msg, "multipart without boundary");

	assert_int_equal(inspect("Content-Type: text/plain\n"
	    "Content-Type: text/html\n\nx\n", &info, &err), SG_EMALFORMED);
	assert_string_equal(err.msg, "conflicting header fields");

	for (int i = 0; i < 40; i++)
		g_string_append_printf(deep, "Content-Type: multipart/mixed; "
		    "boundary=b%d\n\n--b%d\n", i, i);
	g_string_append(deep, "Content-Type: text/plain\n\nx\n");
	for (int i = 39; i >= 0; i--)
		g_string_append_printf(deep, "--b%d--\n", i);
	assert_int_equal(inspect(deep->str, &info, &err), SG_ELIMIT);
	assert_string_equal(err.msg,
	    "MIME nesting deeper than 32 levels or more than 10000 parts");
	g_string_free(deep, TRUE);

	/* Exactly at the limit is fine. */
	deep = g_string_new(NULL);
	for (int i = 0; i < SG_MIME_MAX_DEPTH - 1; i++)
		g_string_append_printf(deep, "Content-Type: multipart/mixed; "
		    "boundary=b%d\n\n--b%d\n", i, i);
	g_string_append(deep, "Content-Type: text/plain\n\nx\n");
	for (int i = SG_MIME_MAX_DEPTH - 2; i >= 0; i--)
		g_string_append_printf(deep, "--b%d--\n", i);
	assert_int_equal(inspect(deep->str, &info, &err), 0);
	assert_int_equal(info.depth, SG_MIME_MAX_DEPTH);
	g_string_free(deep, TRUE);
}

static char *
spool_text(struct sg_spool *sp)
{
	GString *s = g_string_new(NULL);
	char buf[7];
	size_t n;
	off_t off = 0;

	for (;;) {
		assert_int_equal(sg_spool_read_at(sp, off, buf, sizeof(buf), &n), 0);
		if (n == 0)
			break;
		g_string_append_len(s, buf, (gssize)n);
		off += (off_t)n;
	}
	return g_string_free(s, FALSE);
}

static void
test_spool_memory_then_disk(void **state)
{
	struct sg_spool *sp = NULL;
	char *text;

	(void)state;
	assert_int_equal(sg_spool_new("/tmp", 16, &sp), 0);
	assert_int_equal(sg_spool_puts(sp, "0123456789"), 0);
	assert_false(sg_spool_on_disk(sp));
	assert_int_equal(sg_spool_puts(sp, "abcdefghij"), 0);
	assert_true(sg_spool_on_disk(sp));
	assert_int_equal(sg_spool_size(sp), 20);
	text = spool_text(sp);
	assert_string_equal(text, "0123456789abcdefghij");
	g_free(text);
	sg_spool_free(sp);

	assert_int_equal(sg_spool_new("/nonexistent-dir", 4, &sp), 0);
	assert_int_equal(sg_spool_puts(sp, "abc"), 0);
	assert_int_equal(sg_spool_error(sp), 0);
	assert_int_equal(sg_spool_puts(sp, "defgh"), SG_EIO);
	/* Why, for the log: the first failure's errno. */
	assert_int_equal(sg_spool_error(sp), ENOENT);
	sg_spool_free(sp);
}

static void
test_spool_crlf(void **state)
{
	struct sg_spool *sp = NULL;
	char *text;

	(void)state;
	assert_int_equal(sg_spool_new("/tmp", 1024, &sp), 0);
	/* LF, CRLF, and a CR/LF pair split across two writes. */
	assert_int_equal(sg_spool_write_crlf(sp, "a\nb\r\nc\r", 7), 0);
	assert_int_equal(sg_spool_write_crlf(sp, "\nd\n\n", 4), 0);
	text = spool_text(sp);
	assert_string_equal(text, "a\r\nb\r\nc\r\nd\r\n\r\n");
	g_free(text);
	sg_spool_free(sp);
}

/* The bytes of a GMime stream over the whole spool. (transfer full) */
static char *
stream_text(struct sg_spool *sp)
{
	GMimeStream *st = sg_spool_stream(sp, 0, -1);
	GByteArray *all = g_byte_array_new();
	GMimeStream *mem = g_mime_stream_mem_new_with_byte_array(all);

	assert_non_null(st);
	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(mem), FALSE);
	assert_true(g_mime_stream_write_to_stream(st, mem) >= 0);
	g_object_unref(st);
	g_object_unref(mem);
	g_byte_array_append(all, (const guint8 *)"", 1);
	return (char *)g_byte_array_free(all, FALSE);
}

/* On disk, small writes are buffered: reads and streams between and after
 * them see every byte, also across the buffer's size and after a write
 * larger than the buffer. */
static void
test_spool_disk_buffer(void **state)
{
	struct sg_spool *sp = NULL;
	GString *want = g_string_new(NULL);
	char *text, *big = g_malloc(200000);

	(void)state;
	memset(big, 'B', 200000);
	assert_int_equal(sg_spool_new("/tmp", 16, &sp), 0);
	for (int i = 0; i < 20000; i++) {
		char line[32];

		g_snprintf(line, sizeof(line), "line %d\n", i);
		assert_int_equal(sg_spool_write_crlf(sp, line, strlen(line)), 0);
		line[strlen(line) - 1] = '\0';
		g_string_append_printf(want, "%s\r\n", line);
		if (i == 10 || i == 9000) {
			text = spool_text(sp);
			assert_string_equal(text, want->str);
			g_free(text);
		}
	}
	assert_true(sg_spool_on_disk(sp));
	assert_int_equal(sg_spool_write(sp, big, 200000), 0);
	g_string_append_len(want, big, 200000);
	assert_int_equal(sg_spool_puts(sp, "tail"), 0);
	g_string_append(want, "tail");
	assert_int_equal(sg_spool_size(sp), want->len);
	text = stream_text(sp);
	assert_string_equal(text, want->str);
	g_free(text);
	text = spool_text(sp);
	assert_string_equal(text, want->str);
	g_free(text);
	sg_spool_free(sp);
	g_string_free(want, TRUE);
	g_free(big);
}

/* A buffered write that the file cannot take (here: over RLIMIT_FSIZE)
 * fails the next read and the next stream, not silently. */
static void
test_spool_disk_buffer_error(void **state)
{
	struct sg_spool *sp = NULL;
	struct rlimit old, lim;
	char buf[64], fill[4000];
	size_t n;
	void (*old_handler)(int);

	(void)state;
	memset(fill, 'x', sizeof(fill));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	old_handler = signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 1000;
	assert_int_equal(sg_spool_new("/tmp", 16, &sp), 0);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(sg_spool_write(sp, fill, sizeof(fill)), 0);
	assert_true(sg_spool_on_disk(sp));
	assert_int_equal(sg_spool_read_at(sp, 0, buf, sizeof(buf), &n), SG_EIO);
	assert_null(sg_spool_stream(sp, 0, -1));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	sg_spool_free(sp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_headers_move_inside),
		cmocka_unit_test(test_header_edits),
		cmocka_unit_test(test_header_edits_without_content_type),
		cmocka_unit_test(test_hidden_recipients),
		cmocka_unit_test(test_inspect_protection),
		cmocka_unit_test(test_inspect_malformed),
		cmocka_unit_test(test_spool_memory_then_disk),
		cmocka_unit_test(test_spool_crlf),
		cmocka_unit_test(test_spool_disk_buffer),
		cmocka_unit_test(test_spool_disk_buffer_error),
	};

	g_mime_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
