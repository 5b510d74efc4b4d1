/* In-process OpenPGP encryption (crypto/openpgp_rnp.c) whose output is
 * refused part way: librnp 0.16 drops its output after the first refused
 * write and still reports success, so a body that lost a piece of its
 * ciphertext (a spool write that failed once, on a full disk) must end in
 * an error, never in a message that looks encrypted. Carol's example key
 * in a throwaway keystore; the same message with a writer that accepts
 * everything is encrypted by rnp (the control). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "openpgp_int.h"
#include "sealgate/addr.h"
#include "sealgate/keystore.h"
#include "sealgate/openpgp.h"

#define CAROL "carol@partner.example"
#define PLAIN_SIZE (300 * 1024)

static char *dir;
static struct sg_keystore *ks;
static char fpr[SG_FPR_MAX];

/* PLAIN_SIZE bytes that do not compress, so that the armored output
 * comes in many writes. */
static int
plain_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	size_t *given = ctx, n = PLAIN_SIZE - *given;

	if (n > len)
		n = len;
	for (size_t i = 0; i < n; i++)
		((unsigned char *)buf)[i] = (unsigned char)g_random_int();
	*given += n;
	*nread = n;
	return SG_OK;
}

/* Keeps what it accepts; refuses the write number refuse (1: the first),
 * none when 0. */
struct out {
	GByteArray *bytes;
	unsigned calls, refuse;
};

static int
out_write(void *ctx, const void *buf, size_t len)
{
	struct out *o = ctx;

	if (++o->calls == o->refuse)
		return SG_EIO;
	g_byte_array_append(o->bytes, buf, (guint)len);
	return SG_OK;
}

static int
encrypt(unsigned refuse, struct out *o, struct sg_openpgp_enc *info,
	struct sg_err *err)
{
	const char *fprs[1] = { fpr };
	size_t given = 0;
	struct sg_reader in = { plain_read, &given };
	struct sg_writer out = { out_write, o };

	o->bytes = g_byte_array_new();
	o->calls = 0;
	o->refuse = refuse;
	return sg_openpgp_encrypt(ks, fprs, 1, NULL, 0, &in, &out, info, err);
}

static void
test_output_accepted(void **state)
{
	struct out o;
	struct sg_openpgp_enc info;
	struct sg_err err = { 0 };

	(void)state;
	assert_int_equal(encrypt(0, &o, &info, &err), SG_OK);
	assert_string_equal(info.engine, "rnp");
	assert_true(o.calls >= 3);
	assert_non_null(g_strstr_len((char *)o.bytes->data, o.bytes->len,
	    "-----END PGP MESSAGE-----"));
	g_byte_array_free(o.bytes, TRUE);
}

static void
test_output_refused_once(void **state)
{
	(void)state;
	/* The first write, one in the middle, the last one. */
	for (unsigned refuse = 1; refuse <= 3; refuse++) {
		struct out o;
		struct sg_openpgp_enc info;
		struct sg_err err = { 0 };
		unsigned calls;
		int rc;

		assert_int_equal(encrypt(0, &o, &info, &err), SG_OK);
		calls = o.calls;
		g_byte_array_free(o.bytes, TRUE);
		assert_true(calls >= 3);
		rc = encrypt(refuse == 1 ? 1 : refuse == 2 ? calls / 2 : calls,
		    &o, &info, &err);
		/* A final error, not a fallback to gpg after the output began. */
		assert_true(rc < 0 && rc != SG_ENOKEY);
		g_byte_array_free(o.bytes, TRUE);
	}
}

static int
set_up(void **state)
{
	char *path;
	gchar *data = NULL;
	gsize len = 0;
	struct sg_keystore *w = NULL;
	struct sg_openpgp_import res = { 0 };
	struct sg_err err = { 0 };
	const char *src = getenv("SEALGATE_SRC");

	(void)state;
	if (src == NULL || sg_openpgp_init(&err) < 0)
		return -1;
	dir = g_dir_make_tmp("sgrnpout.XXXXXX", NULL);
	path = g_build_filename(src, "keys-example", "openpgp", "carol.pub.asc",
	    NULL);
	if (dir == NULL || !g_file_get_contents(path, &data, &len, NULL) ||
	    sg_keystore_open(dir, SG_KS_CREATE, &err, &w) < 0 ||
	    sg_openpgp_import(w, data, len, NULL, &res, &err) < 0 ||
	    sg_keystore_snapshot(dir, sg_addr_key, &err, &ks) < 0 ||
	    sg_openpgp_find_key(ks, CAROL, fpr, &err) < 0) {
		print_error("set-up: %s\n", err.msg);
		return -1;
	}
	sg_openpgp_import_clear(&res);
	sg_keystore_free(w);
	g_free(data);
	g_free(path);
	return 0;
}

static int
tear_down(void **state)
{
	char *home = ks != NULL ? g_strdup(ks->gnupg_home) : NULL;

	(void)state;
	sg_keystore_free(ks);
	if (home != NULL)
		sg_pgp_remove_home(home);
	g_free(home);
	if (dir != NULL)
		sg_keystore_remove_tree(dir);
	g_free(dir);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_output_accepted),
		cmocka_unit_test(test_output_refused_once),
	};

	return cmocka_run_group_tests(tests, set_up, tear_down);
}
