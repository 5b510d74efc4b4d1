/* "Already encrypted" judged from the bytes: OpenPGP packet sequences and
 * ASCII armor (sg_openpgp_packets_encrypted, sg_openpgp_is_encrypted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "sealgate/encrypted.h"

/* Packets written as hex; spaces ignored. (transfer full) */
static GByteArray *
hex(const char *s)
{
	GByteArray *b = g_byte_array_new();

	for (; *s; s++) {
		unsigned v;

		if (*s == ' ')
			continue;
		assert_int_equal(sscanf(s, "%2x", &v), 1);
		g_byte_array_append(b, (guint8 *)&(guint8){ (guint8)v }, 1);
		s++;
	}
	return b;
}

#define PKESK "840a 03 0102030405060708 01"    /* old format, v3 */
#define SKESK "c304 04 09 0300"                /* new format, v4 */
#define SEIPD "d205 01 aabbccdd"               /* v1 */

static void
test_packet_sequences(void **state)
{
	static const struct { const char *hex; bool ok; } cases[] = {
		{ PKESK SEIPD, true },
		{ PKESK PKESK SEIPD, true },
		{ SKESK SEIPD, true },
		{ PKESK "d405 01 aabbccdd", true },             /* AEAD */
		{ PKESK "d2e0 01 e1 aabb 02 ccdd", true },      /* partial lengths */
		{ PKESK "d2e0 01 e1 aabb 05 ccdd", false },     /* chunk too long */
		{ PKESK "d2e0 01 e1 aabb", false },             /* no last chunk */
		{ SEIPD, false },                                /* no session key */
		{ PKESK, false },                                /* no data */
		{ PKESK SEIPD "00", false },                     /* trailing byte */
		{ PKESK SEIPD SEIPD, false },                    /* two data packets */
		{ PKESK SEIPD PKESK, false },
		{ PKESK "a405 01 aabbccdd", false },             /* SED (tag 9) */
		{ PKESK "cb06 62 00 00000000", false },          /* literal */
		{ "cb06 62 00 00000000" PKESK SEIPD, false },
		{ PKESK "a803 504750", false },                  /* marker */
		{ "a803 504750", false },
		{ PKESK "c802 01 00", false },                   /* compressed */
		{ "9003 03 0001" PKESK SEIPD, false },           /* one-pass sig */
		{ PKESK "d205 03 aabbccdd", false },             /* unknown version */
		{ "8403 07 0102" SEIPD, false },
		{ PKESK "d200", false },                         /* empty body */
		{ "87 0102030405" SEIPD, false },                /* indeterminate */
		{ "", false },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		GByteArray *b = hex(cases[i].hex);

		if (sg_openpgp_packets_encrypted(b->data, b->len) != cases[i].ok)
			fail_msg("case %zu (%s)", i, cases[i].hex);
		g_byte_array_free(b, TRUE);
	}
}

static void
test_session_key_bound(void **state)
{
	GByteArray *one = hex(PKESK), *data = g_byte_array_new();
	GByteArray *seipd = hex(SEIPD);

	(void)state;
	for (int i = 0; i < SG_PGP_MAX_SESSION_KEYS; i++)
		g_byte_array_append(data, one->data, one->len);
	g_byte_array_append(data, seipd->data, seipd->len);
	assert_true(sg_openpgp_packets_encrypted(data->data, data->len));
	g_byte_array_prepend(data, one->data, one->len);
	assert_false(sg_openpgp_packets_encrypted(data->data, data->len));
	g_byte_array_free(one, TRUE);
	g_byte_array_free(seipd, TRUE);
	g_byte_array_free(data, TRUE);
}

/* PKESK SEIPD as base64. */
#define B64 "hAoDAQIDBAUGBwgB0gUBqrvM3Q=="

static void
test_armor(void **state)
{
	static const struct { const char *text; bool ok; } cases[] = {
		{ "-----BEGIN PGP MESSAGE-----\n\n" B64 "\n-----END PGP MESSAGE-----\n", true },
		{ "\r\n  -----BEGIN PGP MESSAGE-----\r\nVersion: GnuPG v2\r\n\r\n"
		  B64 "\r\n=njUN\r\n-----END PGP MESSAGE-----\r\n\r\n", true },
		{ "secret\n-----BEGIN PGP MESSAGE-----\n\n" B64
		  "\n-----END PGP MESSAGE-----\n", false },
		{ "-----BEGIN PGP MESSAGE-----\n\n" B64
		  "\n-----END PGP MESSAGE-----\nsecret\n", false },
		{ "-----BEGIN PGP MESSAGE-----\n\n" B64 "\nsecret words\n"
		  "-----END PGP MESSAGE-----\n", false },
		{ "-----BEGIN PGP MESSAGE-----\n\n" B64 "\n=njUN\nhAMD\n"
		  "-----END PGP MESSAGE-----\n", false },
		{ "-----BEGIN PGP MESSAGE-----\nComment: "
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		  "\n\n" B64 "\n-----END PGP MESSAGE-----\n", false },
		{ "-----BEGIN PGP MESSAGE-----\nsecret text\n\n" B64
		  "\n-----END PGP MESSAGE-----\n", false },
		{ "-----BEGIN PGP MESSAGE-----\n\n" B64 "\n", false },
		{ "-----BEGIN PGP SIGNED MESSAGE-----\n\n" B64
		  "\n-----END PGP MESSAGE-----\n", false },
		/* A no-break space on the empty line (Thunderbird's corpus). */
		{ "-----BEGIN PGP MESSAGE-----\r\n\xc2\xa0\r\n" B64
		  "\r\n-----END PGP MESSAGE-----\r\n", true },
		{ "-----BEGIN PGP MESSAGE-----\n\xa0\n" B64
		  "\n-----END PGP MESSAGE-----\n", true },
		/* ... but no text hides behind one. */
		{ "-----BEGIN PGP MESSAGE-----\n\xc2\xa0secret\n\n" B64
		  "\n-----END PGP MESSAGE-----\n", false },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		const char *t = cases[i].text;

		if (sg_openpgp_is_encrypted(t, strlen(t), true) != cases[i].ok)
			fail_msg("case %zu", i);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packet_sequences),
		cmocka_unit_test(test_session_key_bound),
		cmocka_unit_test(test_armor),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
