/* Rule conditions: globs, MIP labels, subject tags, header regexes, sizes,
 * first-match decisions and the envelope-only methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "sealgate/msg.h"
#include "sealgate/policy.h"
#include "sealgate/rules.h"

static char *tmpdir;

static void
test_glob(void **state)
{
	static const struct {
		const char *pattern, *addr;
		bool match;
	} cases[] = {
		{ "carol@partner.example", "carol@partner.example", true },
		{ "carol@partner.example", "Carol@Partner.Example", true },
		{ "carol@partner.example", "dave@partner.example", false },
		{ "*@partner.example", "dave@partner.example", true },
		{ "*@partner.example", "dave@sub.partner.example", false },
		{ "partner.example", "dave@partner.example", true },
		{ "partner.example", "dave@sub.partner.example", false },
		{ "*.partner.example", "dave@sub.partner.example", true },
		{ "*.partner.example", "dave@partner.example", false },
		{ "*.partner.example", "dave@evilpartner.example", false },
		{ "c?rol@*", "carol@anything.example", true },
		{ "*", "x@y.example", true },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
		if (sg_glob_match(cases[i].pattern, cases[i].addr) != cases[i].match)
			fail_msg("glob \"%s\" vs \"%s\": want %d", cases[i].pattern,
			    cases[i].addr, cases[i].match);
}

static gint
cmp_str(gconstpointer a, gconstpointer b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *
labels_text(const char *value)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	GString *s = g_string_new(NULL);

	sg_mip_labels(value, names);
	g_ptr_array_sort(names, cmp_str);
	for (guint i = 0; i < names->len; i++)
		g_string_append_printf(s, "%s%s", i ? "|" : "",
		    (char *)g_ptr_array_index(names, i));
	g_ptr_array_free(names, TRUE);
	return g_string_free(s, FALSE);
}

static void
test_mip_labels(void **state)
{
	static const char *cases[][2] = {
		{ "MSIP_Label_3a8b4d5e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_Enabled=true; "
		  "MSIP_Label_3a8b4d5e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_SetDate=2024-01-01T10:00:00Z; "
		  "MSIP_Label_3a8b4d5e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_Method=Privileged; "
		  "MSIP_Label_3a8b4d5e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_Name=Confidential; "
		  "MSIP_Label_3a8b4d5e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_SiteId=0f0e; "
		  "MSIP_Label_3a8b4d5e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_ActionId=1234; "
		  "MSIP_Label_3a8b4d5e-1f2a-4b3c-9d8e-7f6a5b4c3d2e_ContentBits=0",
		  "Confidential" },
		/* Two labels, one of them disabled. */
		{ "MSIP_Label_aaaa_Enabled=true; MSIP_Label_aaaa_Name=Internal; "
		  "MSIP_Label_bbbb_Enabled=False; MSIP_Label_bbbb_Name=Secret",
		  "Internal" },
		{ "MSIP_Label_aaaa_Name=Public;MSIP_Label_cccc_Name=Highly Confidential",
		  "Highly Confidential|Public" },
		{ "garbage; =; MSIP_Label_; MSIP_Label__Name=x; Name=y", "" },
		{ "", "" },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *got = labels_text(cases[i][0]);

		if (strcmp(got, cases[i][1]) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, got,
			    cases[i][1]);
		g_free(got);
	}
}

static void
test_subject_strip(void **state)
{
	static const char *cases[][3] = {
		{ "[secure] Quarterly numbers", "[secure]", "Quarterly numbers" },
		{ "Quarterly [SECURE] numbers", "[secure]", "Quarterly numbers" },
		{ "Re: numbers [Secure]", "[secure]", "Re: numbers" },
		{ "[secure]", "[secure]", "" },
		{ "Hi [secure] and [SECURE] twice", "[secure]", "Hi and twice" },
		{ "no tag here", "[secure]", NULL },
		{ "[secure-ish] x", "[secure]", NULL },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *got = sg_subject_strip_tag(cases[i][0], cases[i][1]);

		if (g_strcmp0(got, cases[i][2]) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i,
			    got ? got : "(null)", cases[i][2] ? cases[i][2] : "(null)");
		g_free(got);
	}
}

static void
test_subject_decode_encode(void **state)
{
	char *dec, *enc, *round;

	(void)state;
	dec = sg_header_decode("=?utf-8?q?=5Bsecure=5D_Gr=C3=BC=C3=9Fe?=\n"
	    " =?utf-8?q?_aus_K=C3=B6ln?=");
	assert_string_equal(dec, "[secure] Grüße aus Köln");
	enc = sg_subject_encode("Grüße aus Köln");
	assert_non_null(strstr(enc, "=?"));
	for (const char *p = enc; *p; p++)
		assert_true((unsigned char)*p < 0x80);
	round = sg_header_decode(enc);
	assert_string_equal(round, "Grüße aus Köln");
	g_free(dec);
	g_free(enc);
	g_free(round);

	enc = sg_subject_encode("plain ascii");
	assert_string_equal(enc, "plain ascii");
	g_free(enc);
}

static struct sg_policy *
policy(const char *yaml)
{
	char *path = g_build_filename(tmpdir, "p.yaml", NULL);
	GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
	struct sg_policy *pol = NULL;

	assert_true(g_file_set_contents(path, yaml, -1, NULL));
	if (sg_policy_load(path, errors, &pol) < 0)
		fail_msg("policy: %s", (char *)g_ptr_array_index(errors, 0));
	unlink(path);
	g_free(path);
	g_ptr_array_free(errors, TRUE);
	return pol;
}

static struct sg_msg *
message(const char *const *hdrs, size_t body_len)
{
	struct sg_msg *msg = NULL;
	char *body = g_malloc(body_len + 1);

	memset(body, 'x', body_len);
	body[body_len] = '\0';
	assert_int_equal(sg_msg_new("/tmp", &msg), 0);
	sg_msg_set_sender(msg, "alice@example.com");
	for (; hdrs && *hdrs; hdrs += 2)
		assert_int_equal(sg_msg_add_header(msg, hdrs[0], hdrs[1]), 0);
	assert_int_equal(sg_msg_end_headers(msg), 0);
	assert_int_equal(sg_msg_add_body(msg, body, body_len), 0);
	g_free(body);
	return msg;
}

static const char rules_yaml[] =
	"version: 1\n"
	"gateway: { keystore: s }\n"
	"internal_domains: [example.com]\n"
	"outbound:\n"
	"  default: { action: encrypt-if-key, methods: [openpgp, smime] }\n"
	"  rules:\n"
	"    - name: confidential\n"
	"      when: { header: { name: Sensitivity, matches: \"company-confidential\" } }\n"
	"      action: encrypt\n"
	"    - name: mip\n"
	"      when: { label: [Confidential, Secret] }\n"
	"      action: encrypt\n"
	"      on_missing_key: tempfail\n"
	"    - name: tag\n"
	"      when: { subject_tag: \"[secure]\", sender: \"*@example.com\" }\n"
	"      action: encrypt\n"
	"      on_missing_key: send-plain\n"
	"    - name: big\n"
	"      when: { size_over: 1K, recipient: \"*.partner.example\" }\n"
	"      action: none\n"
	"    - name: partner\n"
	"      when: { recipient_domain: partner.example }\n"
	"      action: encrypt\n"
	"      methods: [smime]\n";

/* The name of the deciding rule ("default" for none) for one message. */
static const char *
decide(const struct sg_policy *pol, const char *const *hdrs, size_t size,
       const char *rcpt, struct sg_decision *d)
{
	struct sg_msg *msg = message(hdrs, size);
	struct sg_facts f;

	sg_facts_from_msg(&f, msg);
	sg_policy_decide(pol, &f, rcpt, d);
	sg_facts_clear(&f);
	sg_msg_free(msg);
	return d->rule ? d->rule : "default";
}

static void
test_decisions(void **state)
{
	struct sg_policy *pol = policy(rules_yaml);
	struct sg_decision d;
	const char *sens[] = { "Sensitivity", "Company-Confidential", NULL };
	const char *sens_folded[] = { "Sensitivity", "Personal;\n\tcompany-CONFIDENTIAL", NULL };
	const char *sens_other[] = { "Sensitivity", "Personal", NULL };
	const char *mip[] = { "msip_labels", "MSIP_Label_ab_Enabled=true; MSIP_Label_ab_Name=secret", NULL };
	const char *tag[] = { "Subject", "=?utf-8?q?=5BSecure=5D_Gr=C3=BC=C3=9Fe?=", NULL };

	(void)state;
	assert_string_equal(decide(pol, sens, 10, "x@other.example", &d), "confidential");
	assert_int_equal(d.action, SG_ACTION_ENCRYPT);
	assert_int_equal(d.on_missing_key, SG_MISSING_REJECT);
	assert_ptr_equal(d.methods, &pol->out_default.methods);
	assert_string_equal(decide(pol, sens_folded, 10, "x@other.example", &d), "confidential");
	assert_string_equal(decide(pol, sens_other, 10, "x@other.example", &d), "default");
	assert_int_equal(d.action, SG_ACTION_ENCRYPT_IF_KEY);
	assert_string_equal(decide(pol, mip, 10, "x@other.example", &d), "mip");
	assert_int_equal(d.on_missing_key, SG_MISSING_TEMPFAIL);
	assert_string_equal(decide(pol, tag, 10, "x@other.example", &d), "tag");
	assert_true(d.strip_tag);
	assert_string_equal(d.subject_tag, "[secure]");
	assert_int_equal(d.on_missing_key, SG_MISSING_SEND_PLAIN);
	/* size_over and a subdomain glob must both hold. */
	assert_string_equal(decide(pol, NULL, 2000, "a@sub.partner.example", &d), "big");
	assert_string_equal(decide(pol, NULL, 100, "a@sub.partner.example", &d), "default");
	assert_string_equal(decide(pol, NULL, 2000, "a@partner.example", &d), "partner");
	assert_int_equal(d.methods->n, 1);
	assert_int_equal(d.methods->v[0], SG_METHOD_SMIME);
	/* First match wins. */
	assert_string_equal(decide(pol, sens, 10, "a@partner.example", &d), "confidential");
	sg_policy_unref(pol);
}

/* An anchored header condition sees the unfolded value without the white
 * space around it. */
static void
test_header_value_trimmed(void **state)
{
	static const char yaml[] =
		"version: 1\n"
		"gateway: { keystore: s }\n"
		"internal_domains: [example.com]\n"
		"outbound:\n"
		"  default: { action: encrypt-if-key, methods: [openpgp] }\n"
		"  rules:\n"
		"    - name: confidential\n"
		"      when: { header: { name: Sensitivity, matches: \"^company-confidential$\" } }\n"
		"      action: encrypt\n";
	static const char *const values[] = {
		"Company-Confidential",
		"\n\tCompany-Confidential",
		"\r\n Company-Confidential\r\n ",
		"Company-Confidential ",
		"Company-Confidential\t",
		"   Company-Confidential \t ",
		"=?utf-8?q?Company-Confidential_?=",
		"\xc2\xa0" "Company-Confidential\xc2\xa0",
	};
	struct sg_policy *pol = policy(yaml);
	const char *other[] = { "Sensitivity", "Company-Confidential x", NULL };
	struct sg_decision d;

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(values); i++) {
		const char *h[] = { "Sensitivity", values[i], NULL };

		if (strcmp(decide(pol, h, 10, "x@other.example", &d),
		    "confidential") != 0)
			fail_msg("value %zu not matched", i);
	}
	assert_string_equal(decide(pol, other, 10, "x@other.example", &d), "default");
	sg_policy_unref(pol);
}

static void
test_why_and_envelope(void **state)
{
	struct sg_policy *pol = policy(rules_yaml);
	const struct sg_rule *tag = g_ptr_array_index(pol->rules, 2);
	GString *why = g_string_new(NULL);
	struct sg_facts f;

	(void)state;
	sg_facts_init(&f, "mallory@evil.example");
	assert_false(sg_rule_matches(tag, &f, "x@other.example", why));
	assert_string_equal(why->str,
	    "sender <mallory@evil.example> does not match *@example.com");
	sg_facts_clear(&f);

	sg_facts_init(&f, "alice@example.com");
	assert_false(sg_rule_matches(tag, &f, "x@other.example", why));
	assert_string_equal(why->str, "needs the message content (not given)");
	sg_facts_clear(&f);

	assert_false(sg_rule_envelope_only(tag));
	assert_true(sg_rule_envelope_only(g_ptr_array_index(pol->rules, 4)));
	/* Envelope methods: the partner rule's for partner.example. */
	assert_int_equal(sg_policy_envelope_methods(pol, "alice@example.com",
	    "a@partner.example")->v[0], SG_METHOD_SMIME);
	assert_int_equal(sg_policy_envelope_methods(pol, "alice@example.com",
	    "a@other.example")->n, 2);
	g_string_free(why, TRUE);
	sg_policy_unref(pol);
}

static void
test_trusted_networks(void **state)
{
	struct sg_policy *pol = policy("version: 1\ngateway:\n  keystore: s\n"
	    "  trusted_networks: [10.1.0.0/16, 192.0.2.7, \"2001:db8::/32\"]\n");
	struct sg_policy *def = policy("version: 1\ngateway: { keystore: s }\n");

	(void)state;
	assert_true(sg_policy_trusted_ip(pol, "10.1.255.3"));
	assert_false(sg_policy_trusted_ip(pol, "10.2.0.1"));
	assert_true(sg_policy_trusted_ip(pol, "192.0.2.7"));
	assert_false(sg_policy_trusted_ip(pol, "192.0.2.8"));
	assert_true(sg_policy_trusted_ip(pol, "2001:db8:1::5"));
	assert_true(sg_policy_trusted_ip(pol, "::ffff:10.1.2.3"));
	assert_false(sg_policy_trusted_ip(pol, "127.0.0.1"));
	assert_false(sg_policy_trusted_ip(pol, NULL));
	assert_false(sg_policy_trusted_ip(pol, "not-an-ip"));
	assert_true(sg_policy_trusted_ip(def, "127.0.0.1"));
	assert_true(sg_policy_trusted_ip(def, "::1"));
	assert_false(sg_policy_trusted_ip(def, "192.0.2.1"));
	sg_policy_unref(pol);
	sg_policy_unref(def);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_mip_labels),
		cmocka_unit_test(test_subject_strip),
		cmocka_unit_test(test_subject_decode_encode),
		cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_header_value_trimmed),
		cmocka_unit_test(test_why_and_envelope),
		cmocka_unit_test(test_trusted_networks),
	};
	int rc;

	g_mime_init();
	tmpdir = g_dir_make_tmp("sgrules.XXXXXX", NULL);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(tmpdir);
	g_free(tmpdir);
	return rc;
}
