/* Policy loader: values, defaults, and the exact text and position of
 * every kind of error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "sealgate/policy.h"

static char *tmpdir;

/* Writes text to DIR/policy.yaml, loads it, and returns the errors joined
 * by "\n" with the directory replaced by "DIR" ("" when it loaded). */
static char *
load_text(const char *text, struct sg_policy **out)
{
	char *path = g_build_filename(tmpdir, "policy.yaml", NULL);
	GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
	GString *joined = g_string_new(NULL);
	struct sg_policy *pol = NULL;

	assert_true(g_file_set_contents(path, text, -1, NULL));
	if (sg_policy_load(path, errors, &pol) == 0) {
		assert_int_equal(errors->len, 0);
		if (out != NULL)
			*out = pol;
		else
			sg_policy_unref(pol);
	} else {
		assert_null(pol);
	}
	for (guint i = 0; i < errors->len; i++) {
		char *e = g_ptr_array_index(errors, i);

		assert_true(g_str_has_prefix(e, tmpdir));
		g_string_append_printf(joined, "%sDIR%s", i ? "\n" : "",
		    e + strlen(tmpdir));
	}
	g_ptr_array_free(errors, TRUE);
	g_free(path);
	return g_string_free(joined, FALSE);
}

static void
test_valid_policy_and_defaults(void **state)
{
	struct sg_policy *pol = NULL;
	char *errs, *ks;

	(void)state;
	errs = load_text(
	    "version: 1\n"
	    "gateway:\n"
	    "  keystore: store\n"
	    "internal_domains: [Example.COM, example.org]\n", &pol);
	assert_string_equal(errs, "");
	assert_non_null(pol);
	assert_int_equal(pol->version, 1);
	ks = g_build_filename(tmpdir, "store", NULL);
	assert_string_equal(pol->gateway.keystore, ks);
	assert_string_equal(pol->gateway.socket, "inet:8891@127.0.0.1");
	assert_string_equal(pol->gateway.spool_dir, "/var/spool/sealgate");
	assert_int_equal(pol->gateway.socket_mode, 0660);
	assert_null(pol->gateway.socket_group);
	assert_null(pol->gateway.user);
	assert_null(pol->gateway.group);
	assert_int_equal(pol->gateway.max_message_size, 50LL * 1024 * 1024);
	assert_int_equal(pol->out_default.action, SG_ACTION_ENCRYPT_IF_KEY);
	assert_int_equal(pol->out_default.methods.n, 2);
	assert_int_equal(pol->out_default.methods.v[0], SG_METHOD_OPENPGP);
	assert_true(sg_policy_is_internal(pol, "alice@EXAMPLE.com"));
	assert_true(sg_policy_is_internal(pol, "bob@example.org"));
	assert_false(sg_policy_is_internal(pol, "carol@partner.example"));
	assert_false(sg_policy_is_internal(pol, "carol@sub.example.com"));
	assert_false(sg_policy_is_internal(pol, "no-domain"));
	sg_policy_unref(pol);
	g_free(ks);
	g_free(errs);
}

static void
test_explicit_values(void **state)
{
	struct sg_policy *pol = NULL;
	char *errs;

	(void)state;
	errs = load_text(
	    "version: 1\n"
	    "gateway:\n"
	    "  socket: \"unix:/run/sealgate/milter.sock\"\n"
	    "  socket_mode: 0640\n"
	    "  socket_group: nogroup\n"
	    "  user: nobody\n"
	    "  group: nogroup\n"
	    "  keystore: /var/lib/sealgate/keys\n"
	    "  spool_dir: spool\n"
	    "  max_message_size: 10K\n"
	    "outbound:\n"
	    "  default: { action: none, methods: [smime, openpgp] }\n", &pol);
	assert_string_equal(errs, "");
	assert_string_equal(pol->gateway.socket, "unix:/run/sealgate/milter.sock");
	assert_int_equal(pol->gateway.socket_mode, 0640);
	assert_string_equal(pol->gateway.socket_group, "nogroup");
	assert_string_equal(pol->gateway.user, "nobody");
	assert_string_equal(pol->gateway.group, "nogroup");
	assert_string_equal(pol->gateway.keystore, "/var/lib/sealgate/keys");
	assert_int_equal(pol->gateway.max_message_size, 10240);
	assert_int_equal(pol->out_default.action, SG_ACTION_NONE);
	assert_int_equal(pol->out_default.methods.n, 2);
	assert_int_equal(pol->out_default.methods.v[0], SG_METHOD_SMIME);
	assert_int_equal(pol->out_default.methods.v[1], SG_METHOD_OPENPGP);
	assert_int_equal(pol->internal_domains->len, 0);
	sg_policy_unref(pol);
	g_free(errs);
}

struct error_case {
	const char *name;
	const char *yaml;
	const char *errors;
};

static const struct error_case error_cases[] = {
	{ "unknown top-level key",
	  "version: 1\ngateway: { keystore: s }\nbogus: 1\n",
	  "DIR/policy.yaml:3:1: unknown key \"bogus\"" },
	{ "unknown nested key",
	  "version: 1\ngateway:\n  keystore: s\n  sokcet: x\n",
	  "DIR/policy.yaml:4:3: unknown key \"sokcet\" in \"gateway\"" },
	{ "duplicate key",
	  "version: 1\ngateway: { keystore: s }\nversion: 1\n",
	  "DIR/policy.yaml:3:1: duplicate key \"version\"" },
	{ "missing required keys",
	  "internal_domains: [example.com]\n",
	  "DIR/policy.yaml:1:1: missing required key \"version\"\n"
	  "DIR/policy.yaml:1:1: missing required key \"gateway\"" },
	{ "missing nested required key",
	  "version: 1\ngateway:\n  socket: x\n",
	  "DIR/policy.yaml:3:3: missing required key \"keystore\" in \"gateway\"" },
	{ "wrong type: integer",
	  "version: one\ngateway: { keystore: s }\n",
	  "DIR/policy.yaml:1:10: \"version\" must be an integer" },
	{ "wrong type: mapping",
	  "version: 1\ngateway: [a, b]\n",
	  "DIR/policy.yaml:2:10: \"gateway\" must be a mapping" },
	{ "wrong type: list",
	  "version: 1\ngateway: { keystore: s }\ninternal_domains: { a: b }\n",
	  "DIR/policy.yaml:3:19: \"internal_domains\" must be a list of domains" },
	{ "wrong type: scalar expected",
	  "version: 1\ngateway: { keystore: [a] }\n",
	  "DIR/policy.yaml:2:22: \"keystore\" must be a string" },
	{ "unknown action",
	  "version: 1\ngateway: { keystore: s }\n"
	  "outbound:\n  default: { action: encrypt-always }\n",
	  "DIR/policy.yaml:4:22: unknown action \"encrypt-always\" "
	  "(expected one of: none, sign, encrypt, sign-encrypt, encrypt-if-key)" },
	{ "unknown method",
	  "version: 1\ngateway: { keystore: s }\n"
	  "outbound:\n  default: { methods: [openpgp, pem] }\n",
	  "DIR/policy.yaml:4:33: unknown method \"pem\" "
	  "(expected one of: openpgp, smime)" },
	{ "method twice",
	  "version: 1\ngateway: { keystore: s }\n"
	  "outbound:\n  default: { methods: [smime, smime] }\n",
	  "DIR/policy.yaml:4:31: method \"smime\" listed twice" },
	{ "invalid domain",
	  "version: 1\ngateway: { keystore: s }\n"
	  "internal_domains: [example.com, \"bad domain\"]\n",
	  "DIR/policy.yaml:3:33: invalid domain \"bad domain\" in \"internal_domains\"" },
	{ "invalid size",
	  "version: 1\ngateway: { keystore: s, max_message_size: 12X }\n",
	  "DIR/policy.yaml:2:43: \"max_message_size\": invalid size \"12X\" "
	  "(expected a number with optional K, M or G)" },
	{ "unsupported version",
	  "version: 2\ngateway: { keystore: s }\n",
	  "DIR/policy.yaml:1:1: unsupported policy version 2 (expected 1)" },
	{ "YAML syntax error",
	  "version: 1\ngateway: { keystore: s\n",
	  "DIR/policy.yaml:3:1: YAML: did not find expected ',' or '}' "
	  "while parsing a flow mapping" },
	{ "empty file",
	  "",
	  "DIR/policy.yaml:1:1: the policy file is empty" },
	{ "not a mapping",
	  "- a\n- b\n",
	  "DIR/policy.yaml:1:1: the policy must be a mapping of keys" },
	{ "alias",
	  "version: 1\ngateway: &g { keystore: s }\noutbound: *g\n",
	  "DIR/policy.yaml:2:10: YAML aliases are not allowed in the policy" },
	{ "rule without name",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - when: { subject_tag: x }\n      action: encrypt\n",
	  "DIR/policy.yaml:5:7: missing required key \"name\" in \"outbound.rules[1]\"" },
	{ "duplicate rule names",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - { name: a, when: { subject_tag: x }, action: encrypt }\n"
	  "    - { name: a, when: { subject_tag: y }, action: encrypt }\n",
	  "DIR/policy.yaml:6:9: duplicate rule name \"a\"" },
	{ "invalid regular expression",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - name: r\n      when: { header: { name: X, matches: \"(\" } }\n"
	  "      action: encrypt\n",
	  /* The rest is GLib's (localised) text. */
	  "DIR/policy.yaml:6:43: invalid regular expression \"(\": *" },
	{ "header without matches",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - name: r\n      when: { header: { name: X } }\n      action: encrypt\n",
	  "DIR/policy.yaml:6:23: missing required key \"matches\" in "
	  "\"outbound.rules[1].when.header\"" },
	{ "rule without conditions",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - { name: all, when: {}, action: encrypt }\n",
	  "DIR/policy.yaml:5:20: rule \"all\" has no conditions: it would match "
	  "every message and make the rules after it and outbound.default "
	  "unreachable (set outbound.default instead)" },
	{ "on_missing_key without a mandatory action",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - { name: r, when: { sender: a@b.c }, action: encrypt-if-key,"
	  " on_missing_key: reject }\n",
	  "DIR/policy.yaml:5:67: rule \"r\": on_missing_key has no effect with "
	  "action \"encrypt-if-key\"" },
	{ "strip_tag without subject_tag",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - { name: r, when: { sender: a@b.c }, action: encrypt, strip_tag: false }\n",
	  "DIR/policy.yaml:5:60: rule \"r\": strip_tag needs a subject_tag condition" },
	{ "errors in file order",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - name: r\n      when: { sender: a@b.c }\n      strip_tag: false\n"
	  "      action: encrypt\n      bogus: 1\n",
	  "DIR/policy.yaml:7:7: rule \"r\": strip_tag needs a subject_tag condition\n"
	  "DIR/policy.yaml:9:7: unknown key \"bogus\" in \"outbound.rules[1]\"" },
	{ "wrong boolean",
	  "version: 1\ngateway: { keystore: s }\ninbound: { decrypt: maybe }\n",
	  "DIR/policy.yaml:3:21: \"decrypt\" must be true or false" },
	{ "invalid network",
	  "version: 1\ngateway: { keystore: s, trusted_networks: [10.0.0.0/33] }\n",
	  "DIR/policy.yaml:2:44: invalid network \"10.0.0.0/33\" in "
	  "\"trusted_networks\" (expected an address or ADDRESS/PREFIX)" },
	{ "invalid signing network",
	  "version: 1\ngateway: { keystore: s, signing_networks: [bad] }\n",
	  "DIR/policy.yaml:2:44: invalid network \"bad\" in "
	  "\"signing_networks\" (expected an address or ADDRESS/PREFIX)" },
	{ "sender_logins missing",
	  "version: 1\ngateway: { keystore: s, sender_logins: /nonexistent/logins }\n",
	  "DIR/policy.yaml:2:40: \"sender_logins\": cannot open /nonexistent/logins: "
	  "No such file or directory" },
	{ "sender_logins not a file",
	  "version: 1\ngateway: { keystore: s, sender_logins: / }\n",
	  "DIR/policy.yaml:2:40: \"sender_logins\": / is not a regular file" },
	{ "glob with an empty label",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - { name: r, when: { recipient: \"*@a..b\" }, action: encrypt }\n",
	  "DIR/policy.yaml:5:37: invalid address or domain glob \"*@a..b\" in "
	  "\"recipient\"" },
	{ "invalid domain",
	  "version: 1\ngateway: { keystore: s }\ninternal_domains: [a..b]\n",
	  "DIR/policy.yaml:3:20: invalid domain \"a..b\" in \"internal_domains\"" },
	{ "subdomain pattern of one label",
	  "version: 1\ngateway: { keystore: s }\ninternal_domains: [example.com, .com]\n",
	  "DIR/policy.yaml:3:33: invalid domain \".com\" in \"internal_domains\"" },
	{ "subdomain pattern with two dots",
	  "version: 1\ngateway: { keystore: s }\ninternal_domains: [..example.com]\n",
	  "DIR/policy.yaml:3:20: invalid domain \"..example.com\" in \"internal_domains\"" },
	{ "a dot alone",
	  "version: 1\ngateway: { keystore: s }\ninternal_domains: [\".\"]\n",
	  "DIR/policy.yaml:3:20: invalid domain \".\" in \"internal_domains\"" },
	{ "rules not a list",
	  "version: 1\ngateway: { keystore: s }\noutbound: { rules: { a: 1 } }\n",
	  "DIR/policy.yaml:3:20: \"rules\" must be a list of rules" },
	{ "unknown condition",
	  "version: 1\ngateway: { keystore: s }\noutbound:\n  rules:\n"
	  "    - { name: r, when: { subjct_tag: x }, action: encrypt }\n",
	  "DIR/policy.yaml:5:26: unknown key \"subjct_tag\" in \"outbound.rules[1].when\"" },
	{ "unknown on_missing_key",
	  "version: 1\ngateway: { keystore: s }\n"
	  "outbound: { default: { action: encrypt, on_missing_key: drop } }\n",
	  "DIR/policy.yaml:3:57: unknown on_missing_key \"drop\" "
	  "(expected one of: reject, tempfail, send-plain)" },
	{ "unknown user",
	  "version: 1\ngateway: { keystore: s, user: no-such-sg-user }\n",
	  "DIR/policy.yaml:2:31: \"user\": unknown user \"no-such-sg-user\"" },
	{ "unknown group",
	  "version: 1\ngateway:\n  keystore: s\n  user: nobody\n"
	  "  group: no-such-sg-group\n",
	  "DIR/policy.yaml:5:10: \"group\": unknown group \"no-such-sg-group\"" },
	{ "unknown socket group",
	  "version: 1\ngateway: { keystore: s, socket_group: no-such-sg-group }\n",
	  "DIR/policy.yaml:2:39: \"socket_group\": unknown group "
	  "\"no-such-sg-group\"" },
	{ "empty user",
	  "version: 1\ngateway: { keystore: s, user: \"\" }\n",
	  "DIR/policy.yaml:2:31: \"user\" must not be empty" },
	{ "user not a string",
	  "version: 1\ngateway: { keystore: s, user: [nobody] }\n",
	  "DIR/policy.yaml:2:31: \"user\" must be a user name" },
	{ "mode with a digit that is not octal",
	  "version: 1\ngateway: { keystore: s, socket_mode: 0999 }\n",
	  "DIR/policy.yaml:2:38: \"socket_mode\": invalid mode \"0999\" "
	  "(expected three or four octal digits, such as 0660)" },
	{ "mode in letters",
	  "version: 1\ngateway: { keystore: s, socket_mode: rw }\n",
	  "DIR/policy.yaml:2:38: \"socket_mode\": invalid mode \"rw\" "
	  "(expected three or four octal digits, such as 0660)" },
	{ "mode too short",
	  "version: 1\ngateway: { keystore: s, socket_mode: 66 }\n",
	  "DIR/policy.yaml:2:38: \"socket_mode\": invalid mode \"66\" "
	  "(expected three or four octal digits, such as 0660)" },
	{ "mode for everybody",
	  "version: 1\ngateway: { keystore: s, socket_mode: \"0666\" }\n",
	  "DIR/policy.yaml:2:38: \"socket_mode\": mode 0666 lets every local "
	  "user connect to the milter and have mail signed or decrypted; give "
	  "others nothing, such as 0660" },
	{ "mode with other execute only",
	  "version: 1\ngateway: { keystore: s, socket_mode: 661 }\n",
	  "DIR/policy.yaml:2:38: \"socket_mode\": mode 661 lets every local "
	  "user connect to the milter and have mail signed or decrypted; give "
	  "others nothing, such as 0660" },
	{ "mode with special bits",
	  "version: 1\ngateway: { keystore: s, socket_mode: 4660 }\n",
	  "DIR/policy.yaml:2:38: \"socket_mode\": mode 4660 has special bits "
	  "(set-user-ID, set-group-ID or sticky); give permissions only, such "
	  "as 0660" },
	{ "several errors at once",
	  "version: 1\ngateway: { keystore: s, foo: 1 }\nbar: 2\n",
	  "DIR/policy.yaml:2:25: unknown key \"foo\" in \"gateway\"\n"
	  "DIR/policy.yaml:3:1: unknown key \"bar\"" },
};

static void
test_error_texts(void **state)
{
	unsigned failed = 0;

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(error_cases); i++) {
		const char *want = error_cases[i].errors;
		char *errs = load_text(error_cases[i].yaml, NULL);
		size_t n = strlen(want);
		bool prefix = n > 0 && want[n - 1] == '*';

		/* A trailing '*' in the table: the rest of the text is not ours. */
		if (prefix ? strncmp(errs, want, n - 1) != 0 || strlen(errs) < n
		    : strcmp(errs, want) != 0) {
			print_error("case \"%s\":\n got: %s\nwant: %s\n",
			    error_cases[i].name, errs, error_cases[i].errors);
			failed++;
		}
		g_free(errs);
	}
	if (failed)
		fail_msg("%u error case(s) differ", failed);
}

/* IDN domains in the policy are kept as A-labels, like envelope domains. */
static void
test_idn_domains(void **state)
{
	struct sg_policy *pol = NULL;
	const struct sg_rule *r;
	char *errs;

	(void)state;
	errs = load_text(
	    "version: 1\ngateway: { keystore: s }\n"
	    "internal_domains: [Bücher.Example]\n"
	    "outbound:\n  rules:\n"
	    "    - { name: r, when: { recipient: \"*@*.MÜNCHEN.example.\", "
	    "recipient_domain: köln.example }, action: encrypt }\n", &pol);
	assert_string_equal(errs, "");
	assert_true(sg_policy_is_internal(pol, "a@xn--bcher-kva.example"));
	r = g_ptr_array_index(pol->rules, 0);
	assert_string_equal(g_ptr_array_index(r->when.recipient, 0),
	    "*@*.xn--mnchen-3ya.example");
	assert_string_equal(g_ptr_array_index(r->when.recipient_domain, 0),
	    "xn--kln-sna.example");
	sg_policy_unref(pol);
	g_free(errs);
}

/* ".example.com" in internal_domains and recipient_domain: every
 * subdomain, not the domain itself, and no domain that merely ends in the
 * same letters. */
static void
test_subdomains(void **state)
{
	static const struct {
		const char *addr;
		bool internal;
	} cases[] = {
		{ "bounces+123@lists.example.com", true },
		{ "a@b.c.example.com", true },
		{ "a@LISTS.Example.COM", true },
		{ "a@sub.xn--bcher-kva.example", true },
		{ "a@example.com", false },
		{ "a@badexample.com", false },
		{ "a@lists.example.com.evil.example", false },
		{ "a@example.com.evil.example", false },
		{ "a@.example.com", false },
		{ "a@xn--bcher-kva.example", true },
		{ "a@other.example", false },
		{ "example.com", false },
	};
	struct sg_policy *pol = NULL;
	const struct sg_rule *r;
	char *errs;

	(void)state;
	errs = load_text(
	    "version: 1\ngateway: { keystore: s }\n"
	    "internal_domains: [.example.com, Bücher.Example, .bücher.example]\n"
	    "outbound:\n  rules:\n"
	    "    - { name: r, when: { recipient_domain: .Partner.Example }, "
	    "action: encrypt }\n", &pol);
	assert_string_equal(errs, "");
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
		if (sg_policy_is_internal(pol, cases[i].addr) != cases[i].internal)
			fail_msg("%s: internal should be %d", cases[i].addr,
			    cases[i].internal);
	r = g_ptr_array_index(pol->rules, 0);
	assert_string_equal(g_ptr_array_index(r->when.recipient_domain, 0),
	    ".partner.example");
	assert_true(sg_policy_domain_matches(".partner.example", "mx.partner.example"));
	assert_false(sg_policy_domain_matches(".partner.example", "partner.example"));
	assert_false(sg_policy_domain_matches(".partner.example", "xpartner.example"));
	assert_true(sg_policy_domain_matches("partner.example", "PARTNER.example"));
	assert_false(sg_policy_domain_matches("partner.example", "a.partner.example"));
	sg_policy_unref(pol);
	g_free(errs);
}

/* Who may sign as whom (sg_policy_may_sign), with and without a
 * sender_logins file. */
static void
test_may_sign(void **state)
{
	static const struct {
		bool map;
		const char *sender, *login, *ip;
		bool ok;
		const char *why;
	} cases[] = {
		{ false, "alice@example.com", "alice", NULL, true, "" },
		{ false, "alice@example.com", "ALICE@Example.com.", NULL, true, "" },
		{ false, "Alice@example.com", "alice", NULL, true, "" },
		{ false, "alice@example.com", "bob", NULL, false,
		  "login \"bob\" is neither the address nor its local part" },
		{ false, "alice@example.com", "alice@example.org", NULL, false, "login" },
		{ false, "alice@example.com", "alice@example.com x", NULL, false,
		  "the SMTP AUTH login is not usable" },
		{ false, "alice@example.com", "", NULL, false, "not usable" },
		{ false, "alice@example.com", NULL, "10.1.2.3", true, "" },
		{ false, "alice@example.com", NULL, "::ffff:10.1.2.3", true, "" },
		{ false, "alice@example.com", NULL, "127.0.0.1", false,
		  "client 127.0.0.1 is not authenticated (SMTP AUTH) and not in "
		  "gateway.signing_networks" },
		{ false, "alice@example.com", NULL, NULL, false, "client (unknown)" },
		{ false, "", "alice", NULL, false, "null sender" },
		{ true, "alice@example.com", "assistant", NULL, true, "" },
		{ true, "alice@example.com", "alice", NULL, false,
		  "login \"alice\" does not own the address in gateway.sender_logins" },
		{ true, "bob@example.com", "admin", NULL, true, "" },
		{ true, "bob@example.com", "bob", NULL, false, "does not own" },
		{ true, "carol@example.org", "carol", NULL, false,
		  "gateway.sender_logins names no owner of the address" },
	};
	char *path = g_build_filename(tmpdir, "logins", NULL);
	struct sg_policy *plain = NULL, *map = NULL;
	char why[160], *errs;

	(void)state;
	assert_true(g_file_set_contents(path,
	    "alice@EXAMPLE.com. assistant\n@example.com admin\n", -1, NULL));
	errs = load_text("version: 1\ngateway: { keystore: s, "
	    "signing_networks: [10.0.0.0/8] }\n", &plain);
	assert_string_equal(errs, "");
	g_free(errs);
	errs = load_text("version: 1\ngateway: { keystore: s, "
	    "sender_logins: logins }\n", &map);
	assert_string_equal(errs, "");
	g_free(errs);
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		bool ok;

		why[0] = '\0';
		ok = sg_policy_may_sign(cases[i].map ? map : plain, cases[i].sender,
		    cases[i].login, cases[i].ip, why, sizeof(why));
		if (ok != cases[i].ok || strstr(why, cases[i].why) == NULL)
			fail_msg("case %zu (%s as %s from %s): %d \"%s\"", i,
			    cases[i].sender, cases[i].login ? cases[i].login : "-",
			    cases[i].ip ? cases[i].ip : "-", ok, why);
	}
	sg_policy_unref(plain);
	sg_policy_unref(map);
	unlink(path);
	g_free(path);
}

static void
test_missing_file(void **state)
{
	GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
	struct sg_policy *pol = NULL;

	(void)state;
	assert_int_equal(sg_policy_load("/nonexistent/policy.yaml", errors, &pol),
	    SG_ECONFIG);
	assert_null(pol);
	assert_int_equal(errors->len, 1);
	assert_string_equal(g_ptr_array_index(errors, 0),
	    "/nonexistent/policy.yaml: cannot open: No such file or directory");
	g_ptr_array_free(errors, TRUE);
}

static void
test_refcount(void **state)
{
	struct sg_policy *pol = NULL;
	char *errs;

	(void)state;
	errs = load_text("version: 1\ngateway: { keystore: s }\n", &pol);
	assert_string_equal(errs, "");
	assert_ptr_equal(sg_policy_ref(pol), pol);
	assert_int_equal(pol->refcount, 2);
	sg_policy_unref(pol);
	assert_int_equal(pol->refcount, 1);
	sg_policy_unref(pol);
	sg_policy_unref(NULL);
	g_free(errs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_policy_and_defaults),
		cmocka_unit_test(test_explicit_values),
		cmocka_unit_test(test_error_texts),
		cmocka_unit_test(test_idn_domains),
		cmocka_unit_test(test_subdomains),
		cmocka_unit_test(test_may_sign),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_refcount),
	};
	char *path;
	int rc;

	tmpdir = g_dir_make_tmp("sgpol.XXXXXX", NULL);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	path = g_build_filename(tmpdir, "policy.yaml", NULL);
	unlink(path);
	rmdir(tmpdir);
	g_free(path);
	g_free(tmpdir);
	return rc;
}
