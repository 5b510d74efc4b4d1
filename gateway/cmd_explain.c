/* `sealgate policy explain`: for each recipient, which class, which rule,
 * which action and key, and why the rules before it did not match. */
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "msgfile.h"
#include "sealgate/openpgp.h"
#include "sealgate/pipeline.h"
#include "sealgate/plan.h"
#include "sealgate/rules.h"
#include "sealgate/smime.h"
#include "sealgate/smimecaps.h"
#include "sealgate.h"

struct skipped {
	const char *rule;
	char *why;
};

struct explained {
	const char *addr;
	enum sg_class cls;
	char *class_reason;
	char fpr[SG_FPR_MAX];
	struct sg_decision d;
	bool decided;           /* rules were evaluated */
	const char *method;
	const char *signer;     /* signing key, when the outcome signs */
	const char *cannot_sign; /* why the sender cannot sign, when asked to */
	enum sg_outcome outcome;
	const char *missing;    /* for reject/tempfail: what is missing */
	bool smime;             /* S/MIME encrypted (fpr: its certificate) */
	char *caps;             /* then: what its owner is known to read */
	GArray *skipped;        /* struct skipped */
};

static void
explain_rules(const struct sg_policy *pol, const struct sg_facts *f,
	      struct explained *e)
{
	GString *why = g_string_new(NULL);

	e->decided = true;
	sg_policy_decide(pol, f, e->addr, &e->d);
	for (guint i = 0; i < pol->rules->len; i++) {
		const struct sg_rule *r = g_ptr_array_index(pol->rules, i);
		struct skipped s = { r->name, NULL };

		if (e->d.rule != NULL && strcmp(r->name, e->d.rule) == 0)
			break;
		g_string_truncate(why, 0);
		sg_rule_matches(r, f, e->addr, why);
		s.why = g_strdup(why->str);
		g_array_append_val(e->skipped, s);
	}
	g_string_free(why, TRUE);
}

/* What the owner of e's certificate is known to read. */
static void
describe_caps(const struct sg_keystore *ks, struct explained *e)
{
	struct sg_smime_caps caps;
	struct sg_err err = { 0 };
	char buf[192];

	e->smime = true;
	if (sg_smime_caps_get(ks, e->fpr, &caps, &err) < 0) {
		e->caps = g_strdup_printf("unknown (%s)", err.msg);
		return;
	}
	sg_smime_caps_describe(&caps, buf, sizeof(buf));
	e->caps = g_strdup(buf);
}

static int
explain_one(const struct sg_policy *pol, const struct sg_keystore *ks,
	    const struct sg_msg *msg, const struct sg_facts *f,
	    struct sg_signers *signers, struct explained *e)
{
	struct sg_rcpt_plan rp;
	int rc;

	rc = sg_pipeline_classify(pol, ks, msg, e->addr, &e->cls, e->fpr,
	    &e->class_reason);
	if (rc < 0)
		return rc;
	if (e->cls == SG_CLASS_PASS || e->cls == SG_CLASS_INTERNAL) {
		e->outcome = SG_OUTCOME_PASS;
		return SG_OK;
	}
	explain_rules(pol, f, e);
	if (e->d.action == SG_ACTION_SIGN || e->d.action == SG_ACTION_SIGN_ENCRYPT) {
		rc = sg_signers_lookup(signers, pol, ks, msg);
		if (rc < 0)
			return rc;
	}
	sg_plan_recipient(&e->d, e->cls, signers, &rp);
	e->outcome = rp.outcome;
	e->missing = rp.missing;
	if (rp.encrypt_method >= 0)
		e->method = sg_method_name(rp.encrypt_method);
	else if (rp.sign_method >= 0)
		e->method = sg_method_name(rp.sign_method);
	if (rp.sign_method >= 0)
		e->signer = signers->fpr[rp.sign_method];
	else if (e->d.action == SG_ACTION_SIGN ||
	    e->d.action == SG_ACTION_SIGN_ENCRYPT)
		e->cannot_sign = signers->why[sg_class_method(e->cls) >= 0 ?
		    sg_class_method(e->cls) : e->d.methods->v[0]];
	if (rp.encrypt_method < 0)
		e->fpr[0] = '\0';
	if (rp.encrypt_method == SG_METHOD_SMIME)
		describe_caps(ks, e);
	return SG_OK;
}

static void
print_text(const struct explained *e)
{
	sg_tprintf(stdout, "recipient: %s\n", e->addr);
	sg_tprintf(stdout, "  class: %s (%s)\n", sg_class_name(e->cls),
	    e->class_reason ? e->class_reason : "");
	if (e->decided) {
		for (guint i = 0; i < e->skipped->len; i++) {
			const struct skipped *s = &g_array_index(e->skipped,
			    struct skipped, i);

			sg_tprintf(stdout, "  skipped %s: %s\n", s->rule, s->why);
		}
		sg_tprintf(stdout, "  rule: %s\n", e->d.rule ? e->d.rule : "outbound.default");
		sg_tprintf(stdout, "  action: %s\n", sg_action_name(e->d.action));
		if (sg_action_mandatory(e->d.action))
			sg_tprintf(stdout, "  on_missing_key: %s\n",
			    sg_on_missing_name(e->d.on_missing_key));
	} else {
		sg_tprintf(stdout, "  rule: -\n");
		sg_tprintf(stdout, "  action: none\n");
	}
	sg_tprintf(stdout, "  method: %s\n", e->method ? e->method : "-");
	sg_tprintf(stdout, "  key: %s\n", *e->fpr && e->method ? e->fpr : "-");
	if (e->smime)
		sg_tprintf(stdout, "  capabilities: %s\n", e->caps);
	if (e->signer != NULL)
		sg_tprintf(stdout, "  signing key: %s\n", e->signer);
	if (e->cannot_sign != NULL)
		sg_tprintf(stdout, "  cannot sign: %s\n", e->cannot_sign);
	sg_tprintf(stdout, "  outcome: %s\n", sg_outcome_name(e->outcome));
	if (e->missing != NULL)
		sg_tprintf(stdout, "  missing: %s\n", e->missing);
}

static void
json_field(GString *out, const char *name, const char *value, bool comma)
{
	sg_json_string(out, name);
	g_string_append_c(out, ':');
	sg_json_string(out, value);
	if (comma)
		g_string_append_c(out, ',');
}

static void
append_json(GString *out, const struct explained *e)
{
	g_string_append_c(out, '{');
	json_field(out, "address", e->addr, true);
	json_field(out, "class", sg_class_name(e->cls), true);
	json_field(out, "class_reason", e->class_reason, true);
	json_field(out, "rule", e->decided ? e->d.rule : NULL, true);
	json_field(out, "action", sg_action_name(e->decided ? e->d.action
	    : SG_ACTION_NONE), true);
	json_field(out, "method", e->method, true);
	json_field(out, "key", *e->fpr && e->method ? e->fpr : NULL, true);
	json_field(out, "capabilities", e->smime ? e->caps : NULL, true);
	json_field(out, "signing_key", e->signer, true);
	json_field(out, "cannot_sign", e->cannot_sign, true);
	json_field(out, "on_missing_key", e->decided &&
	    sg_action_mandatory(e->d.action) ?
	    sg_on_missing_name(e->d.on_missing_key) : NULL, true);
	json_field(out, "outcome", sg_outcome_name(e->outcome), true);
	json_field(out, "missing", e->missing, true);
	g_string_append(out, "\"skipped\":[");
	for (guint i = 0; i < e->skipped->len; i++) {
		const struct skipped *s = &g_array_index(e->skipped,
		    struct skipped, i);

		g_string_append(out, i ? ",{" : "{");
		json_field(out, "rule", s->rule, true);
		json_field(out, "why", s->why, false);
		g_string_append_c(out, '}');
	}
	g_string_append(out, "]}");
}

static void
explained_clear(struct explained *e)
{
	g_free(e->class_reason);
	g_free(e->caps);
	for (guint i = 0; e->skipped && i < e->skipped->len; i++)
		g_free(g_array_index(e->skipped, struct skipped, i).why);
	if (e->skipped)
		g_array_free(e->skipped, TRUE);
}

/* Adds an S/MIME encrypted recipient to the cipher choice; fprs keeps
 * the copy of its certificate's fingerprint. */
static void
add_cipher_rcpt(GArray *smime, GPtrArray *fprs, const struct explained *e)
{
	char *fpr = g_strdup(e->fpr);
	struct sg_cipher_rcpt c = { e->addr, fpr, e->d.smime_cipher,
	    e->d.smime_cipher_rule ? e->d.rule : NULL, 0 };

	g_ptr_array_add(fprs, fpr);
	g_array_append_val(smime, c);
}

/* "client":{address, login, assumed}, as the text form's client line. */
static void
json_client(GString *out, const struct sg_cli *cli)
{
	g_string_append(out, "\"client\":{");
	json_field(out, "address", cli->env.client_ip, true);
	json_field(out, "login", cli->env.auth, true);
	g_string_append_printf(out, "\"assumed\":%s},",
	    cli->env.client_assumed ? "true" : "false");
}

/* Explains every recipient of cli's message; prints text or one JSON
 * object (cli->json). */
static int
explain(const struct sg_cli *cli, const struct sg_facts *f)
{
	const struct sg_policy *pol = cli->pol;
	const struct sg_keystore *ks = cli->ks;
	struct sg_msg *msg = cli->msg;
	bool json = cli->json;
	GString *out = g_string_new(NULL);
	bool outbound = sg_pipeline_outbound(pol, msg);
	char *reason = sg_pipeline_direction(pol, msg);
	enum sg_class first = SG_CLASS_NONE;
	struct sg_signers signers = { 0 };
	GArray *smime = g_array_new(FALSE, TRUE, sizeof(struct sg_cipher_rcpt));
	GPtrArray *fprs = g_ptr_array_new_with_free_func(g_free);
	const char *cipher = NULL;
	char cipher_why[200] = "";
	bool split = false;
	char *client = NULL;
	int rc = SG_OK;

	if (json) {
		g_string_append_printf(out, "{\"outbound\":%s,",
		    outbound ? "true" : "false");
		json_field(out, "reason", reason, true);
		json_client(out, cli);
		json_field(out, "content", f->have_content ? "given" : "not given",
		    true);
		g_string_append(out, "\"recipients\":[");
	} else {
		sg_tprintf(stdout, "outbound: %s (%s)\n",
		    outbound ? "yes" : "no", reason);
		client = sg_cli_client_text(cli);
		sg_tprintf(stdout, "client: %s\n", client);
		sg_tprintf(stdout, "message content: %s\n",
		    f->have_content ? "given"
		    : "not given (content conditions do not match)");
	}
	g_free(reason);
	g_free(client);
	for (guint i = 0; i < msg->rcpts->len && rc == 0; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);
		struct explained e = { .addr = r->addr };

		e.skipped = g_array_new(FALSE, TRUE, sizeof(struct skipped));
		rc = explain_one(pol, ks, msg, f, &signers, &e);
		if (i == 0)
			first = e.cls;
		split |= e.cls != first;
		if (rc == 0 && e.smime)
			add_cipher_rcpt(smime, fprs, &e);
		if (rc < 0) {
			sg_tprintf(stderr, "sealgate: %s: %s\n", r->addr,
			    e.class_reason ? e.class_reason : sg_strerror(rc));
		} else if (json) {
			if (i > 0)
				g_string_append_c(out, ',');
			append_json(out, &e);
		} else {
			print_text(&e);
		}
		explained_clear(&e);
	}
	/* The one content encryption of the message's S/MIME recipients. */
	if (smime->len > 0) {
		sg_cipher_caps(ks, (struct sg_cipher_rcpt *)smime->data,
		    smime->len);
		cipher = sg_smime_cipher_name(sg_cipher_choose(
		    (struct sg_cipher_rcpt *)smime->data, smime->len, cipher_why,
		    sizeof(cipher_why)));
	}
	if (json && rc == 0) {
		g_string_append(out, "],");
		json_field(out, "cipher", cipher, true);
		json_field(out, "cipher_reason", cipher ? cipher_why : NULL, true);
		printf("%s\"split\":%s}\n", out->str, split ? "true" : "false");
	} else if (rc == 0 && cipher != NULL) {
		sg_tprintf(stdout, "cipher: %s (%s)\n", cipher, cipher_why);
	}
	if (!json && rc == 0 && split)
		printf("note: these recipients are of different classes; the milter "
		    "answers 452 4.5.3 to the ones that differ from the first, and "
		    "the sending MTA delivers them in separate transactions\n");
	g_string_free(out, TRUE);
	g_array_free(smime, TRUE);
	g_ptr_array_free(fprs, TRUE);
	return rc;
}

int
sg_cmd_explain(int argc, char **argv)
{
	struct sg_cli cli = { 0 };
	struct sg_facts facts = { 0 };
	int code = SG_EXIT_USAGE;

	if (sg_cli_open(argc, argv, SG_CLI_JSON | SG_CLI_INPUT_OPTIONAL, &cli) < 0) {
		if (cli.help)
			code = 0;
		goto out;
	}
	if (cli.input != NULL)
		sg_facts_from_msg(&facts, cli.msg);
	else
		sg_facts_init(&facts, cli.msg->mail_from);
	if (explain(&cli, &facts) == 0)
		code = 0;
	sg_facts_clear(&facts);
out:
	sg_cli_clear(&cli);
	return code;
}
