/* Envelope addresses in canonical form (sg_addr_canon): every form an
 * MTA resolves to one address gives that address, and everything else is
 * refused with a reason. Forms checked against Postfix 3.7's own resolution
 * (the {rcpt_addr} macro) where it accepts them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "sealgate/addr.h"

struct good {
	const char *arg;
	const char *canon;
};

static const struct good good[] = {
	/* plain and MTA argument forms */
	{ "<alice@example.com>", "alice@example.com" },
	{ "alice@example.com", "alice@example.com" },
	{ "  <alice@example.com>", "alice@example.com" },
	{ "<alice@example.com> SIZE=100 BODY=8BITMIME", "alice@example.com" },
	{ "<>", "" },
	{ "", "" },
	/* trailing dot, domain case */
	{ "<nokey@partner.example.>", "nokey@partner.example" },
	{ "<alice@example.com.>", "alice@example.com" },
	{ "<carol@PARTNER.Example>", "carol@partner.example" },
	{ "<Carol@partner.example>", "Carol@partner.example" },
	/* source routes */
	{ "<@relay.example:carol@partner.example>", "carol@partner.example" },
	{ "<@a.example,@b.example:carol@partner.example.>",
	  "carol@partner.example" },
	{ "<@r.example:alice@EXAMPLE.COM.>", "alice@example.com" },
	/* quoted local parts */
	{ "<\"carol\"@partner.example>", "carol@partner.example" },
	{ "<\"ca\\rol\"@partner.example>", "carol@partner.example" },
	{ "<\"first.last\"@partner.example>", "first.last@partner.example" },
	{ "<\"ca rol\"@partner.example>", "\"ca rol\"@partner.example" },
	{ "<\"c\\\"a\"@partner.example>", "\"c\\\"a\"@partner.example" },
	{ "<\"c\\\\a\"@partner.example>", "\"c\\\\a\"@partner.example" },
	{ "<\"carol.\"@partner.example>", "\"carol.\"@partner.example" },
	{ "<\"a@b\"@partner.example>", "\"a@b\"@partner.example" },
	{ "<a..b@partner.example>", "\"a..b\"@partner.example" },
	{ "<\"a b\"@partner.example> NOTIFY=NEVER", "\"a b\"@partner.example" },
	{ "<o'neil+tag@partner.example>", "o'neil+tag@partner.example" },
	/* IDN: U-labels and A-labels compare as A-labels */
	{ "<carol@bücher.example>", "carol@xn--bcher-kva.example" },
	{ "<carol@BÜCHER.example.>", "carol@xn--bcher-kva.example" },
	{ "<carol@xn--bcher-kva.example>", "carol@xn--bcher-kva.example" },
	{ "<carol@XN--BCHER-KVA.EXAMPLE>", "carol@xn--bcher-kva.example" },
	{ "<jörg@bücher.example>", "jörg@xn--bcher-kva.example" },
	/* address literals */
	{ "<carol@[192.0.2.1]>", "carol@[192.0.2.1]" },
	{ "<carol@[IPv6:2001:DB8:0::1]>", "carol@[IPv6:2001:db8::1]" },
};

struct bad {
	const char *arg;
	const char *why;    /* substring of the reason */
};

static const struct bad bad[] = {
	{ "<@>", "empty local part" },
	{ "@", "empty local part" },
	{ "<@partner.example>", "empty local part" },
	{ "<.>", "no domain" },
	{ "<...>", "no domain" },
	{ "<alice>", "no domain" },
	{ "<postmaster>", "no domain" },
	{ "<alice@>", "invalid domain" },
	{ "<alice@.>", "invalid domain" },
	{ "<alice@..>", "invalid domain" },
	{ "<alice@partner.example..>", "invalid domain" },
	{ "<alice@.partner.example>", "invalid domain" },
	{ "<alice@-partner.example>", "invalid domain" },
	{ "<alice@partner-.example>", "invalid domain" },
	{ "<alice@part ner.example>", "invalid domain" },
	{ "<a@b@partner.example>", "more than one '@'" },
	{ "<\"a\"@b@partner.example>", "more than one '@'" },
	{ "<@relay.example:a@b@partner.example>", "more than one '@'" },
	{ "<\"carol@partner.example>", "unbalanced quotes" },
	{ "<\"carol\\\"@partner.example>", "unbalanced quotes" },
	{ "<carol\"@partner.example>", "unbalanced quotes" },
	{ "<\"carol\"x@partner.example>", "no domain" },
	{ "<carol@partner.example", "unbalanced angle brackets" },
	{ "<<carol@partner.example>>", "unbalanced angle brackets" },
	{ "<carol@partner.example>x", "text after the closing '>'" },
	{ "<ca(rol@partner.example>", "not allowed in an unquoted local part" },
	{ "<ca,rol@partner.example>", "not allowed in an unquoted local part" },
	{ "<ca\\rol@partner.example>", "not allowed in an unquoted local part" },
	{ "<@relay.example carol@partner.example>", "empty local part" },
	{ "<@relay.example,carol@partner.example>", "empty local part" },
	{ "<@:carol@partner.example>", "malformed source route" },
	{ "<@relay\"x:carol@partner.example>", "unbalanced quotes" },
	{ "<ca\x01rol@partner.example>", "control character" },
	{ "<\"ca\x01rol\"@partner.example>", "control character" },
	{ "<\"ca\trol\"@partner.example>", "control character" },
	{ "<carol@partner\x7f.example>", "control character" },
	{ "<carol@partner.example\x1b[31m>", "control character" },
	{ "<ca\xc2\x85rol@partner.example>", "control character" },   /* NEL */
	{ "<carol\xe2\x80\xae@partner.example>", "control character" }, /* RLO */
	{ "<carol@partner\xff.example>", "not valid UTF-8" },
	{ "<carol@xn--zz.example>", "A-label" },
	{ "<carol@xn--.example>", "invalid domain" },
	{ "<carol@xn--a.example>", "A-label" },
	{ "<carol@xn--BCHER-kva.xn--zz.example>", "A-label" },
	{ "<carol@[192.0.2.300]>", "address literal" },
	{ "<carol@[IPv6:1::2::3]>", "address literal" },
	{ "<carol@[x]>", "address literal" },
	{ "<carol@[192.0.2.1>", "address literal" },
	{ "<\"\"@partner.example>", "empty local part" },
};

static void
test_canonical_forms(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
		struct sg_err err = { 0 };
		char *out = NULL;
		int rc = sg_addr_canon(good[i].arg, &out, &err);

		if (rc != 0)
			fail_msg("%s: refused: %s", good[i].arg, err.msg);
		if (strcmp(out, good[i].canon) != 0)
			fail_msg("%s: got %s, want %s", good[i].arg, out,
			    good[i].canon);
		g_free(out);
	}
}

static void
test_refused_forms(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		struct sg_err err = { 0 };
		char *out = (char *)"untouched";
		int rc = sg_addr_canon(bad[i].arg, &out, &err);

		if (rc != SG_EINVAL)
			fail_msg("%s: accepted as %s", bad[i].arg,
			    rc == 0 ? out : "?");
		if (strcmp(out, "untouched") != 0)
			fail_msg("%s: out changed on failure", bad[i].arg);
		if (strstr(err.msg, bad[i].why) == NULL)
			fail_msg("%s: reason \"%s\", want \"%s\"", bad[i].arg,
			    err.msg, bad[i].why);
	}
}

/* Canonical forms are fixed points: canonicalising again changes nothing. */
static void
test_idempotent(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
		char *once = NULL, *twice = NULL;

		assert_int_equal(sg_addr_canon(good[i].arg, &once, NULL), 0);
		assert_int_equal(sg_addr_canon(once, &twice, NULL), 0);
		assert_string_equal(once, twice);
		g_free(once);
		g_free(twice);
	}
}

static const char *
repeat(char c, int n)
{
	static char buf[8][128];
	static int next;
	char *b = buf[next++ % 8];

	memset(b, c, (size_t)n);
	b[n] = '\0';
	return b;
}

/* Length bounds: the RFC 5321 path limit, and arguments far beyond it are
 * refused before they are parsed. */
static void
test_lengths(void **state)
{
	GString *s = g_string_new("<");
	struct sg_err err = { 0 };
	char *out = NULL;

	(void)state;
	/* 64 + 1 + (63 + 1 + 63 + 1 + 53 + 8) = 254: the longest accepted. */
	g_string_append_printf(s, "%s@%s.%s.%s.example>", repeat('a', 64),
	    repeat('b', 63), repeat('b', 63), repeat('b', 53));
	assert_int_equal(sg_addr_canon(s->str, &out, &err), 0);
	assert_int_equal(strlen(out), 254);
	g_free(out);
	out = NULL;
	g_string_insert(s, 1, "a");
	assert_int_equal(sg_addr_canon(s->str, &out, &err), SG_EINVAL);
	assert_non_null(strstr(err.msg, "too long"));
	/* A label of 64 characters. */
	g_string_assign(s, "<a@");
	for (int i = 0; i < 64; i++)
		g_string_append_c(s, 'c');
	g_string_append(s, ".example>");
	assert_int_equal(sg_addr_canon(s->str, &out, &err), SG_EINVAL);
	assert_non_null(strstr(err.msg, "invalid domain"));
	/* A megabyte of local part. */
	g_string_assign(s, "<");
	for (int i = 0; i < 1024 * 1024; i++)
		g_string_append_c(s, 'a');
	g_string_append(s, "@partner.example>");
	assert_int_equal(sg_addr_canon(s->str, &out, &err), SG_EINVAL);
	assert_non_null(strstr(err.msg, "too long"));
	assert_null(out);
	g_string_free(s, TRUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canonical_forms),
		cmocka_unit_test(test_refused_forms),
		cmocka_unit_test(test_idempotent),
		cmocka_unit_test(test_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
