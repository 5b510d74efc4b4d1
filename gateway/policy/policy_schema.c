/* Every key of the policy file, once: type, default, allowed values and
 * help text. The loader (policy.c), `policy check` and `policy keys` all
 * work from these tables. Also the checks that look at a rule as a whole. */
#include <stdio.h>
#include <string.h>

#include "policy_int.h"
#include "sealgate/smime.h"

const struct enum_value sg_action_values[] = {
	{ "none", SG_ACTION_NONE },
	{ "sign", SG_ACTION_SIGN },
	{ "encrypt", SG_ACTION_ENCRYPT },
	{ "sign-encrypt", SG_ACTION_SIGN_ENCRYPT },
	{ "encrypt-if-key", SG_ACTION_ENCRYPT_IF_KEY },
	{ NULL, 0 },
};

const struct enum_value sg_method_values[] = {
	{ "openpgp", SG_METHOD_OPENPGP },
	{ "smime", SG_METHOD_SMIME },
	{ NULL, 0 },
};

const struct enum_value sg_on_missing_values[] = {
	{ "reject", SG_MISSING_REJECT },
	{ "tempfail", SG_MISSING_TEMPFAIL },
	{ "send-plain", SG_MISSING_SEND_PLAIN },
	{ NULL, 0 },
};

const struct enum_value sg_cipher_values[] = {
	{ "aes-256-gcm", SG_SMIME_AES256_GCM },
	{ "aes-128-gcm", SG_SMIME_AES128_GCM },
	{ "aes-256-cbc", SG_SMIME_AES256_CBC },
	{ "aes-128-cbc", SG_SMIME_AES128_CBC },
	{ NULL, 0 },
};

static const struct enum_value log_format_values[] = {
	{ "text", SG_LOG_FORMAT_TEXT },
	{ "json", SG_LOG_FORMAT_JSON },
	{ NULL, 0 },
};

const struct enum_value sg_transport_values[] = {
	{ "rsa-pkcs1", SG_KT_RSA_PKCS1 },
	{ "rsa-oaep", SG_KT_RSA_OAEP },
	{ NULL, 0 },
};

#define END { NULL, 0, 0, NULL, NULL, NULL, false, NULL, NULL }
#define POL(field) offsetof(struct sg_policy, field)
#define RULE(field) offsetof(struct sg_rule, field)

static const struct key gateway_keys[] = {
	{ "socket", KT_STRING, POL(gateway.socket), NULL, NULL,
	  "inet:8891@127.0.0.1", false,
	  "milter socket: inet:PORT@HOST or unix:/path" },
	{ "socket_mode", KT_MODE, POL(gateway.socket_mode), NULL, NULL, "0660",
	  false, "permissions of a unix: socket, in octal; nothing for other "
	  "users (whoever can connect can have mail signed or decrypted)" },
	{ "socket_group", KT_GROUP, POL(gateway.socket_group), NULL, NULL, NULL,
	  false, "group of a unix: socket, e.g. the MTA's (postfix); default: "
	  "the group the milter runs as" },
	{ "user", KT_USER, POL(gateway.user), NULL, NULL, NULL, false,
	  "the user the milter runs as (the keystore's owner): started as root, "
	  "it opens its socket and then switches to this user for good; "
	  "without it, a milter started as root refuses to start (root: stay "
	  "root, not recommended)" },
	{ "group", KT_GROUP, POL(gateway.group), NULL, NULL, NULL, false,
	  "the group the milter runs as; default: the user's primary group" },
	{ "keystore", KT_PATH, POL(gateway.keystore), NULL, NULL, NULL, true,
	  "directory with the OpenPGP and S/MIME keys (created by `sealgate keys import`)" },
	{ "spool_dir", KT_PATH, POL(gateway.spool_dir), NULL, NULL,
	  "/var/spool/sealgate", false,
	  "directory for temporary 0600 files holding large messages" },
	{ "max_message_size", KT_SIZE, POL(gateway.max_message_size), NULL, NULL,
	  "50M", false, "largest message accepted (bytes, or with K/M/G suffix)" },
	{ "trusted_networks", KT_CIDRS, POL(gateway.trusted_networks), NULL, NULL,
	  "127.0.0.0/8,::1", false,
	  "clients allowed to send outbound mail without SMTP AUTH" },
	{ "signing_networks", KT_CIDRS, POL(gateway.signing_networks), NULL,
	  NULL, NULL, false,
	  "clients that may sign as their MAIL FROM address without SMTP AUTH "
	  "(they must also be in trusted_networks); default: none" },
	{ "sender_logins", KT_FILE_LOGINS, POL(gateway.sender_logins), NULL, NULL,
	  NULL, false,
	  "file naming the SMTP AUTH logins that own each address (format of "
	  "Postfix's smtpd_sender_login_maps source: ADDRESS or @DOMAIN, then "
	  "logins separated by commas or blanks); without it a login owns only "
	  "the address equal to it or to its local part" },
	{ "allow_vulnerable_openssl", KT_BOOL,
	  POL(gateway.allow_vulnerable_openssl), NULL, NULL, "false", false,
	  "run on an OpenSSL release with known flaws in CMS/PKCS#7 "
	  "(README, \"Security floor\"); only until the upgrade" },
	{ "metrics", KT_LISTEN, POL(gateway.metrics), NULL, NULL, NULL, false,
	  "serve counters in the OpenMetrics text format at "
	  "http://HOST:PORT/metrics, e.g. 127.0.0.1:9108 ([::1]:9108 for "
	  "IPv6); literal addresses only; no message content, addresses or "
	  "key material; default: off" },
	{ "log_format", KT_ENUM, POL(gateway.log_format), NULL, log_format_values,
	  "text", false, "the milter's line per message: text (key=value) or "
	  "json (one JSON object per line); other lines stay text" },
	END,
};

static const struct key default_keys[] = {
	{ "action", KT_ENUM, POL(out_default.action), NULL, sg_action_values,
	  "encrypt-if-key", false,
	  "none | sign | encrypt | sign-encrypt | encrypt-if-key" },
	{ "methods", KT_METHODS, POL(out_default.methods), NULL, sg_method_values,
	  "openpgp,smime", false, "methods in order of preference: openpgp, smime" },
	{ "on_missing_key", KT_ENUM, POL(out_default.on_missing_key), NULL,
	  sg_on_missing_values, "reject", false,
	  "for sign/encrypt/sign-encrypt: reject | tempfail | send-plain" },
	{ "smime_cipher", KT_ENUM, POL(out_default.smime_cipher), NULL,
	  sg_cipher_values, NULL, false,
	  "S/MIME content encryption, forced: aes-256-gcm | aes-128-gcm "
	  "(AuthEnvelopedData), aes-256-cbc | aes-128-cbc (EnvelopedData); "
	  "not set: the strongest every recipient is known to read (their "
	  "S/MIME capabilities), aes-256-cbc when one is unknown" },
	{ "smime_key_transport", KT_ENUM, POL(out_default.smime_key_transport),
	  NULL, sg_transport_values, "rsa-pkcs1", false,
	  "RSA recipients: rsa-pkcs1 | rsa-oaep (EC recipients always use ECDH)" },
	END,
};

static const struct key header_keys[] = {
	{ "name", KT_STRING, RULE(when.header.name), NULL, NULL, NULL, true,
	  "header field name" },
	{ "matches", KT_REGEX, RULE(when.header.matches), NULL, NULL, NULL, true,
	  "case-insensitive regular expression on the unfolded, decoded value" },
	END,
};

static const struct key when_keys[] = {
	{ "sender", KT_GLOBS, RULE(when.sender), NULL, NULL, NULL, false,
	  "envelope sender (canonical form): addresses or globs (*@example.com, "
	  "*.example.com); IDN domains as U- or A-labels" },
	{ "recipient", KT_GLOBS, RULE(when.recipient), NULL, NULL, NULL, false,
	  "recipient (canonical form): addresses or globs (*@partner.example, "
	  "*.partner.example); IDN domains as U- or A-labels" },
	{ "recipient_domain", KT_DOMAINS, RULE(when.recipient_domain), NULL, NULL,
	  NULL, false, "recipient's domain is one of these (IDN: U- or A-labels; "
	  "\".example.com\": every subdomain)" },
	{ "subject_tag", KT_STRING, RULE(when.subject_tag), NULL, NULL, NULL, false,
	  "text in the Subject, case-insensitive (also RFC 2047 encoded)" },
	{ "header", KT_MAP, 0, header_keys, NULL, NULL, false,
	  "a header field whose value matches a regular expression" },
	{ "label", KT_STRINGS, RULE(when.label), NULL, NULL, NULL, false,
	  "Microsoft Purview (MIP) label name(s) from msip_labels" },
	{ "size_over", KT_SIZE, RULE(when.size_over), NULL, NULL, NULL, false,
	  "message larger than this (bytes, or with K/M/G suffix)" },
	END,
};

static const struct key rule_keys[] = {
	{ "name", KT_STRING, RULE(name), NULL, NULL, NULL, true,
	  "unique name, used in replies and logs" },
	{ "when", KT_MAP, 0, when_keys, NULL, NULL, true,
	  "conditions; all must hold" },
	{ "action", KT_ENUM, RULE(action), NULL, sg_action_values, NULL, true,
	  "none | sign | encrypt | sign-encrypt | encrypt-if-key" },
	{ "methods", KT_METHODS, RULE(methods), NULL, sg_method_values, NULL,
	  false, "methods in order of preference (default: outbound.default's)" },
	{ "on_missing_key", KT_ENUM, RULE(on_missing_key), NULL,
	  sg_on_missing_values, "reject", false,
	  "for sign/encrypt/sign-encrypt: reject | tempfail | send-plain" },
	{ "strip_tag", KT_BOOL, RULE(strip_tag), NULL, NULL, "true", false,
	  "remove the subject_tag from the Subject" },
	{ "smime_cipher", KT_ENUM, RULE(smime_cipher), NULL, sg_cipher_values,
	  NULL, false, "S/MIME content encryption, forced (default: "
	  "outbound.default's)" },
	{ "smime_key_transport", KT_ENUM, RULE(smime_key_transport), NULL,
	  sg_transport_values, NULL, false,
	  "RSA key transport (default: outbound.default's)" },
	END,
};

static const struct key outbound_keys[] = {
	{ "default", KT_MAP, 0, default_keys, NULL, NULL, false,
	  "the decision when no rule matches" },
	{ "rules", KT_RULES, 0, rule_keys, NULL, NULL, false,
	  "rules, evaluated per recipient; the first that matches decides" },
	END,
};

static const struct key inbound_keys[] = {
	{ "decrypt", KT_BOOL, POL(inbound.decrypt), NULL, NULL, "true", false,
	  "decrypt mail for internal recipients" },
	{ "verify", KT_BOOL, POL(inbound.verify), NULL, NULL, "true", false,
	  "verify signatures of inbound mail" },
	{ "require_integrity", KT_BOOL, POL(inbound.require_integrity), NULL,
	  NULL, "true", false,
	  "deliver S/MIME without integrity protection (AES-CBC) decrypted only "
	  "when a valid signature covers the whole decrypted entity "
	  "(integrity=signature); false accepts CBC as it is (EFAIL gadgets)" },
	{ "max_decrypted_size", KT_SIZE, POL(inbound.max_decrypted_size), NULL,
	  NULL, "100M", false,
	  "largest plaintext a decryption may produce (stops compression bombs)" },
	{ "subject_tags", KT_BOOL, POL(inbound.subject_tags), NULL, NULL, "false",
	  false, "prefix the Subject with [decrypted], [signed OK] or "
	  "[signature INVALID] for clients that show no headers" },
	{ "allow_3des", KT_BOOL, POL(inbound.allow_3des), NULL, NULL, "false",
	  false, "accept S/MIME encrypted with 3DES (RC2 and DES never)" },
	{ "signature_date_tolerance", KT_DURATION,
	  POL(inbound.signature_date_tolerance), NULL, NULL, "1h", false,
	  "largest difference between a signature's creation time and the "
	  "message's Date (seconds, or with s, m, h or d); beyond it the "
	  "signature is invalid (reason=date-mismatch)" },
	END,
};

const struct key sg_policy_root_keys[] = {
	{ "version", KT_INT, POL(version), NULL, NULL, NULL, true,
	  "policy file format version; must be 1" },
	{ "gateway", KT_MAP, 0, gateway_keys, NULL, NULL, true, "daemon settings" },
	{ "internal_domains", KT_DOMAINS, POL(internal_domains), NULL, NULL, NULL,
	  false, "mail domains of the organisation (\".example.com\": every "
	  "subdomain, not example.com itself; not a public suffix such as "
	  "\".co.uk\")", NULL, true },
	{ "outbound", KT_MAP, 0, outbound_keys, NULL, NULL, false,
	  "mail from internal senders (trusted clients) to external recipients" },
	{ "inbound", KT_MAP, 0, inbound_keys, NULL, NULL, false,
	  "mail to internal recipients" },
	END,
};

/* The compiled regex lives right after the pattern text (see KT_REGEX). */
G_STATIC_ASSERT(offsetof(struct sg_cond, header.re) ==
    offsetof(struct sg_cond, header.matches) + sizeof(char *));

void
sg_rule_free(struct sg_rule *rule)
{
	struct sg_cond *c;

	if (rule == NULL)
		return;
	c = &rule->when;
	g_free(rule->name);
	if (c->sender)
		g_ptr_array_free(c->sender, TRUE);
	if (c->recipient)
		g_ptr_array_free(c->recipient, TRUE);
	if (c->recipient_domain)
		g_ptr_array_free(c->recipient_domain, TRUE);
	if (c->label)
		g_ptr_array_free(c->label, TRUE);
	g_free(c->subject_tag);
	g_free(c->header.name);
	g_free(c->header.matches);
	if (c->header.re)
		g_regex_unref(c->header.re);
	g_free(rule);
}

static bool
has_conditions(const struct sg_cond *c)
{
	return (c->sender && c->sender->len) ||
	    (c->recipient && c->recipient->len) ||
	    (c->recipient_domain && c->recipient_domain->len) ||
	    c->subject_tag != NULL || c->header.name != NULL ||
	    (c->label && c->label->len) || c->size_over > 0;
}

static yaml_mark_t
mark_of(GHashTable *present, const char *key, yaml_mark_t dflt)
{
	yaml_mark_t *m = g_hash_table_lookup(present, key);

	return m != NULL ? *m : dflt;
}

void
sg_policy_load_rule(struct loader *ld, int id, unsigned index)
{
	yaml_node_t *n = yaml_document_get_node(&ld->doc, id);
	GHashTable *present;
	struct sg_rule *rule;
	const char *name;
	char *where;
	guint nerr = ld->errors->len;

	if (n->type != YAML_MAPPING_NODE) {
		sg_policy_report(ld, n->start_mark, "rules must be mappings");
		return;
	}
	rule = g_new0(struct sg_rule, 1);
	rule->line = (unsigned)n->start_mark.line + 1;
	rule->smime_cipher = -1;
	rule->smime_key_transport = -1;
	sg_policy_apply_defaults(ld, rule_keys, rule);
	present = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	where = g_strdup_printf("outbound.rules[%u]", index);
	sg_policy_load_map(ld, rule_keys, id, where, rule, present);
	name = rule->name ? rule->name : where;

	if (rule->name != NULL &&
	    g_hash_table_contains(ld->rule_names, rule->name)) {
		sg_policy_report(ld, mark_of(present, "name", n->start_mark),
		    "duplicate rule name \"%s\"", rule->name);
	} else if (rule->name != NULL) {
		g_hash_table_add(ld->rule_names, g_strdup(rule->name));
	}
	/* Only when the conditions themselves were fine: a bad one would
	 * otherwise also count as missing. */
	if (ld->errors->len == nerr && g_hash_table_contains(present, "when") &&
	    !has_conditions(&rule->when))
		sg_policy_report(ld, mark_of(present, "when", n->start_mark),
		    "rule \"%s\" has no conditions: it would match every message "
		    "and make the rules after it and outbound.default unreachable "
		    "(set outbound.default instead)", name);
	if (g_hash_table_contains(present, "on_missing_key") &&
	    g_hash_table_contains(present, "action") &&
	    !sg_action_mandatory(rule->action))
		sg_policy_report(ld, mark_of(present, "on_missing_key",
		    n->start_mark), "rule \"%s\": on_missing_key has no effect "
		    "with action \"%s\"", name, sg_action_name(rule->action));
	if (g_hash_table_contains(present, "strip_tag") &&
	    rule->when.subject_tag == NULL)
		sg_policy_report(ld, mark_of(present, "strip_tag", n->start_mark),
		    "rule \"%s\": strip_tag needs a subject_tag condition", name);
	g_hash_table_destroy(present);
	g_free(where);
	if (ld->errors->len > nerr) {
		sg_rule_free(rule);
		return;
	}
	g_ptr_array_add(ld->pol->rules, rule);
}

bool
sg_action_mandatory(int action)
{
	return action == SG_ACTION_SIGN || action == SG_ACTION_ENCRYPT ||
	    action == SG_ACTION_SIGN_ENCRYPT;
}

static const char *
value_name(const struct enum_value *v, int value)
{
	for (; v->name != NULL; v++)
		if (v->value == value)
			return v->name;
	return "?";
}

const char *
sg_action_name(int action)
{
	return value_name(sg_action_values, action);
}

const char *
sg_method_name(int method)
{
	return value_name(sg_method_values, method);
}

const char *
sg_on_missing_name(int on_missing)
{
	return value_name(sg_on_missing_values, on_missing);
}

static const char *
type_label(enum key_type t)
{
	switch (t) {
	case KT_INT:		return "integer";
	case KT_BOOL:		return "boolean";
	case KT_SIZE:		return "size";
	case KT_DURATION:	return "duration";
	case KT_ENUM:		return "one of";
	case KT_REGEX:		return "regex";
	case KT_DOMAINS:	return "domains";
	case KT_STRINGS:	return "strings";
	case KT_GLOBS:		return "globs";
	case KT_FILE_LOGINS:	return "file";
	case KT_METHODS:	return "methods";
	case KT_CIDRS:		return "networks";
	case KT_RULES:		return "list";
	case KT_USER:		return "user";
	case KT_GROUP:		return "group";
	case KT_MODE:		return "mode";
	case KT_LISTEN:		return "address";
	default:		return "string";
	}
}

/* Text for roff: a backslash as \e, '-' as \- (a minus sign, so that names
 * and values can be copied), a leading '.' or '\'' made harmless. */
static void
roff_text(FILE *fp, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", fp);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", fp);
		else if (*s == '-')
			fputs("\\-", fp);
		else
			fputc(*s, fp);
	}
}

static void
describe_key(FILE *fp, const struct key *k, const char *name, bool man)
{
	bool container = k->type == KT_MAP || k->type == KT_RULES;

	if (!man) {
		if (container)
			fprintf(fp, "%-38s %s\n", name, k->help);
		else
			fprintf(fp, "%-38s (%s) %s%s%s%s\n", name,
			    type_label(k->type), k->help,
			    k->required ? "; required" : "",
			    k->dflt ? "; default: " : "", k->dflt ? k->dflt : "");
		return;
	}
	fputs(".TP\n.B ", fp);
	roff_text(fp, name);
	fputc('\n', fp);
	if (!container) {
		fputs("(", fp);
		roff_text(fp, type_label(k->type));
		fputs(") ", fp);
	}
	roff_text(fp, k->help);
	fputs(k->required ? ". Required." : ".", fp);
	if (k->dflt != NULL) {
		fputs(" Default: ", fp);
		roff_text(fp, k->dflt);
		fputc('.', fp);
	}
	fputc('\n', fp);
}

static void
describe(FILE *fp, const struct key *keys, const char *prefix, bool man)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		char *name = *prefix ? g_strdup_printf("%s.%s", prefix, k->name)
		    : g_strdup(k->name);

		describe_key(fp, k, name, man);
		if (k->type == KT_RULES) {
			char *items = g_strdup_printf("%s[]", name);

			describe(fp, k->children, items, man);
			g_free(items);
		} else if (k->type == KT_MAP) {
			describe(fp, k->children, name, man);
		}
		g_free(name);
	}
}

void
sg_policy_describe(FILE *fp)
{
	describe(fp, sg_policy_root_keys, "", false);
}

void
sg_policy_describe_man(FILE *fp)
{
	describe(fp, sg_policy_root_keys, "", true);
}
