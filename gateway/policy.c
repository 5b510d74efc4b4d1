/* Policy file loader and validator.
 *
 * One table (sg_schema below) describes every key: its type, default,
 * allowed values and help text. The loader walks the YAML document against
 * it, reporting every problem as FILE:LINE:COL: message, and fills a
 * struct sg_policy. Defaults are the table's default strings, parsed by the
 * same code as the file's values. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "sealgate/policy.h"

enum key_type {
	KT_MAP,
	KT_INT,
	KT_STRING,
	KT_PATH,     /* string; relative paths resolved against the file's dir */
	KT_SIZE,     /* integer with optional K/M/G suffix */
	KT_ENUM,
	KT_DOMAINS,  /* list of domain names */
	KT_METHODS,  /* list of method names */
};

struct enum_value {
	const char *name;
	int value;
};

struct key {
	const char *name;
	enum key_type type;
	size_t offset;               /* into struct sg_policy; scalars only */
	const struct key *children;  /* KT_MAP */
	const struct enum_value *values; /* KT_ENUM, KT_METHODS */
	const char *dflt;            /* NULL: no default */
	bool required;
	const char *help;
};

static const struct enum_value action_values[] = {
	{ "none", SG_ACTION_NONE },
	{ "encrypt-if-key", SG_ACTION_ENCRYPT_IF_KEY },
	{ NULL, 0 },
};

static const struct enum_value method_values[] = {
	{ "openpgp", SG_METHOD_OPENPGP },
	{ "smime", SG_METHOD_SMIME },
	{ NULL, 0 },
};

#define OFF(field) offsetof(struct sg_policy, field)

static const struct key gateway_keys[] = {
	{ "socket", KT_STRING, OFF(gateway.socket), NULL, NULL,
	  "inet:8891@127.0.0.1", false,
	  "milter socket: inet:PORT@HOST or unix:/path" },
	{ "keystore", KT_PATH, OFF(gateway.keystore), NULL, NULL, NULL, true,
	  "directory with the OpenPGP and S/MIME keys (created by `sealgate keys import`)" },
	{ "spool_dir", KT_PATH, OFF(gateway.spool_dir), NULL, NULL,
	  "/var/spool/sealgate", false,
	  "directory for temporary 0600 files holding large messages" },
	{ "max_message_size", KT_SIZE, OFF(gateway.max_message_size), NULL, NULL,
	  "50M", false,
	  "largest message accepted (bytes, or with K/M/G suffix)" },
	{ NULL, 0, 0, NULL, NULL, NULL, false, NULL },
};

static const struct key default_keys[] = {
	{ "action", KT_ENUM, OFF(out_default.action), NULL, action_values,
	  "encrypt-if-key", false,
	  "what to do with outbound mail: none | encrypt-if-key" },
	{ "methods", KT_METHODS, OFF(out_default.methods), NULL, method_values,
	  "openpgp,smime", false,
	  "methods in order of preference: openpgp, smime" },
	{ NULL, 0, 0, NULL, NULL, NULL, false, NULL },
};

static const struct key outbound_keys[] = {
	{ "default", KT_MAP, 0, default_keys, NULL, NULL, false,
	  "the decision for outbound mail" },
	{ NULL, 0, 0, NULL, NULL, NULL, false, NULL },
};

static const struct key root_keys[] = {
	{ "version", KT_INT, OFF(version), NULL, NULL, NULL, true,
	  "policy file format version; must be 1" },
	{ "gateway", KT_MAP, 0, gateway_keys, NULL, NULL, true,
	  "daemon settings" },
	{ "internal_domains", KT_DOMAINS, OFF(internal_domains), NULL, NULL, "",
	  false, "mail domains of the organisation" },
	{ "outbound", KT_MAP, 0, outbound_keys, NULL, NULL, false,
	  "mail from internal senders to external recipients" },
	{ NULL, 0, 0, NULL, NULL, NULL, false, NULL },
};

/* Parser state while one file is read. */
struct loader {
	const char *path;
	char *dir;
	yaml_document_t doc;
	GPtrArray *errors;
	guint8 *seen;       /* node ids already visited (alias detection) */
	int nnodes;
	struct sg_policy *pol;
};

static void
report(struct loader *ld, yaml_mark_t mark, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
report(struct loader *ld, yaml_mark_t mark, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_ptr_array_add(ld->errors, g_strdup_printf("%s:%zu:%zu: %s", ld->path,
	    mark.line + 1, mark.column + 1, msg));
	g_free(msg);
}

static const char *
type_name(enum key_type t)
{
	switch (t) {
	case KT_MAP:		return "a mapping";
	case KT_INT:		return "an integer";
	case KT_SIZE:		return "a size";
	case KT_DOMAINS:	return "a list of domains";
	case KT_METHODS:	return "a list of methods";
	default:		return "a string";
	}
}

static void *
field(struct sg_policy *pol, const struct key *k)
{
	return (char *)pol + k->offset;
}

static char *
enum_names(const struct enum_value *v)
{
	GString *s = g_string_new(NULL);

	for (; v->name != NULL; v++)
		g_string_append_printf(s, "%s%s", s->len ? ", " : "", v->name);
	return g_string_free(s, FALSE);
}

static const struct enum_value *
enum_find(const struct enum_value *v, const char *name)
{
	for (; v->name != NULL; v++)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

/* Parses "123", "10K", "50M", "1G" into bytes. */
static int
parse_size(const char *s, long long *out)
{
	char *end;
	long long v, mult = 1;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	switch (*end) {
	case 'k': case 'K':	mult = 1024LL; end++; break;
	case 'm': case 'M':	mult = 1024LL * 1024; end++; break;
	case 'g': case 'G':	mult = 1024LL * 1024 * 1024; end++; break;
	default:		break;
	}
	if (*end != '\0' || v > LLONG_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static bool
valid_domain(const char *d)
{
	if (*d == '\0' || strlen(d) > 253)
		return false;
	for (const char *p = d; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
			return false;
	return d[0] != '.' && d[strlen(d) - 1] != '.';
}

/* Sets a scalar key from its text. Returns false (after reporting) when
 * the text is not a valid value. */
static bool
set_scalar(struct loader *ld, const struct key *k, const char *text,
	   yaml_mark_t mark)
{
	const struct enum_value *ev;
	long long size;
	char *end, *names;
	long v;

	switch (k->type) {
	case KT_INT:
		errno = 0;
		v = strtol(text, &end, 10);
		if (*text == '\0' || *end != '\0' || errno != 0 || v > INT_MAX ||
		    v < INT_MIN) {
			report(ld, mark, "\"%s\" must be an integer", k->name);
			return false;
		}
		*(int *)field(ld->pol, k) = (int)v;
		return true;
	case KT_STRING:
	case KT_PATH:
		if (*text == '\0') {
			report(ld, mark, "\"%s\" must not be empty", k->name);
			return false;
		}
		g_free(*(char **)field(ld->pol, k));
		if (k->type == KT_PATH && !g_path_is_absolute(text))
			*(char **)field(ld->pol, k) =
			    g_build_filename(ld->dir, text, NULL);
		else
			*(char **)field(ld->pol, k) = g_strdup(text);
		return true;
	case KT_SIZE:
		if (parse_size(text, &size) < 0 || size == 0) {
			report(ld, mark, "\"%s\": invalid size \"%s\" "
			    "(expected a number with optional K, M or G)",
			    k->name, text);
			return false;
		}
		*(long long *)field(ld->pol, k) = size;
		return true;
	case KT_ENUM:
		ev = enum_find(k->values, text);
		if (ev == NULL) {
			names = enum_names(k->values);
			report(ld, mark, "unknown %s \"%s\" (expected one of: %s)",
			    k->name, text, names);
			g_free(names);
			return false;
		}
		*(int *)field(ld->pol, k) = ev->value;
		return true;
	default:
		return false;
	}
}

/* Adds one list item of a KT_DOMAINS or KT_METHODS key. */
static bool
add_item(struct loader *ld, const struct key *k, const char *text,
	 yaml_mark_t mark)
{
	struct sg_methods *m;
	const struct enum_value *ev;
	char *names;

	if (k->type == KT_DOMAINS) {
		if (!valid_domain(text)) {
			report(ld, mark, "invalid domain \"%s\" in \"%s\"", text,
			    k->name);
			return false;
		}
		g_ptr_array_add(*(GPtrArray **)field(ld->pol, k),
		    g_ascii_strdown(text, -1));
		return true;
	}
	m = field(ld->pol, k);
	ev = enum_find(k->values, text);
	if (ev == NULL) {
		names = enum_names(k->values);
		report(ld, mark, "unknown method \"%s\" (expected one of: %s)",
		    text, names);
		g_free(names);
		return false;
	}
	for (unsigned i = 0; i < m->n; i++) {
		if (m->v[i] == ev->value) {
			report(ld, mark, "method \"%s\" listed twice", text);
			return false;
		}
	}
	m->v[m->n++] = ev->value;
	return true;
}

static void
clear_list(struct sg_policy *pol, const struct key *k)
{
	if (k->type == KT_DOMAINS)
		g_ptr_array_set_size(*(GPtrArray **)field(pol, k), 0);
	else
		((struct sg_methods *)field(pol, k))->n = 0;
}

static yaml_node_t *
node(struct loader *ld, int id)
{
	return yaml_document_get_node(&ld->doc, id);
}

/* Marks a node visited; a node reached twice came through a YAML alias,
 * which the policy does not allow (and which could blow up the walk). */
static bool
visit(struct loader *ld, int id, yaml_node_t *n)
{
	if (id < 1 || id > ld->nnodes)
		return false;
	if (ld->seen[id]) {
		report(ld, n->start_mark, "YAML aliases are not allowed in the policy");
		return false;
	}
	ld->seen[id] = 1;
	return true;
}

static void load_map(struct loader *ld, const struct key *keys, int id,
		     const char *where);

static void
load_list(struct loader *ld, const struct key *k, yaml_node_t *n)
{
	clear_list(ld->pol, k);
	if (n->type != YAML_SEQUENCE_NODE) {
		report(ld, n->start_mark, "\"%s\" must be %s", k->name,
		    type_name(k->type));
		return;
	}
	for (yaml_node_item_t *it = n->data.sequence.items.start;
	     it < n->data.sequence.items.top; it++) {
		yaml_node_t *item = node(ld, *it);

		if (!visit(ld, *it, item))
			continue;
		if (item->type != YAML_SCALAR_NODE) {
			report(ld, item->start_mark, "items of \"%s\" must be strings",
			    k->name);
			continue;
		}
		add_item(ld, k, (const char *)item->data.scalar.value,
		    item->start_mark);
	}
}

static void
load_value(struct loader *ld, const struct key *k, int id, const char *where)
{
	yaml_node_t *n = node(ld, id);
	char *sub;

	if (!visit(ld, id, n))
		return;
	switch (k->type) {
	case KT_MAP:
		if (n->type != YAML_MAPPING_NODE) {
			report(ld, n->start_mark, "\"%s\" must be a mapping", k->name);
			return;
		}
		sub = *where ? g_strdup_printf("%s.%s", where, k->name)
		    : g_strdup(k->name);
		load_map(ld, k->children, id, sub);
		g_free(sub);
		return;
	case KT_DOMAINS:
	case KT_METHODS:
		load_list(ld, k, n);
		return;
	default:
		if (n->type != YAML_SCALAR_NODE) {
			report(ld, n->start_mark, "\"%s\" must be %s", k->name,
			    type_name(k->type));
			return;
		}
		set_scalar(ld, k, (const char *)n->data.scalar.value,
		    n->start_mark);
	}
}

static const struct key *
key_find(const struct key *keys, const char *name)
{
	for (; keys->name != NULL; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

static void
load_map(struct loader *ld, const struct key *keys, int id, const char *where)
{
	yaml_node_t *map = node(ld, id);
	GHashTable *seen = g_hash_table_new(g_str_hash, g_str_equal);

	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = node(ld, p->key);
		const char *name;
		const struct key *k;

		if (kn == NULL || kn->type != YAML_SCALAR_NODE) {
			report(ld, kn != NULL ? kn->start_mark : map->start_mark,
			    "keys must be strings");
			continue;
		}
		name = (const char *)kn->data.scalar.value;
		if (g_hash_table_contains(seen, name)) {
			report(ld, kn->start_mark, "duplicate key \"%s\"", name);
			continue;
		}
		g_hash_table_add(seen, (gpointer)name);
		k = key_find(keys, name);
		if (k == NULL) {
			if (*where)
				report(ld, kn->start_mark,
				    "unknown key \"%s\" in \"%s\"", name, where);
			else
				report(ld, kn->start_mark, "unknown key \"%s\"",
				    name);
			continue;
		}
		load_value(ld, k, p->value, where);
	}
	for (const struct key *k = keys; k->name != NULL; k++) {
		if (k->required && !g_hash_table_contains(seen, k->name)) {
			if (*where)
				report(ld, map->start_mark,
				    "missing required key \"%s\" in \"%s\"",
				    k->name, where);
			else
				report(ld, map->start_mark,
				    "missing required key \"%s\"", k->name);
		}
	}
	g_hash_table_destroy(seen);
}

/* Applies the table's defaults, parsed like values from the file. */
static void
apply_defaults(struct loader *ld, const struct key *keys)
{
	yaml_mark_t none = { 0, 0, 0 };

	for (const struct key *k = keys; k->name != NULL; k++) {
		if (k->type == KT_MAP) {
			apply_defaults(ld, k->children);
		} else if (k->type == KT_DOMAINS || k->type == KT_METHODS) {
			char **items = g_strsplit(k->dflt ? k->dflt : "", ",", -1);

			for (char **it = items; *it != NULL; it++)
				if (**it)
					add_item(ld, k, *it, none);
			g_strfreev(items);
		} else if (k->dflt != NULL) {
			set_scalar(ld, k, k->dflt, none);
		}
	}
}

static struct sg_policy *
policy_new(const char *path)
{
	struct sg_policy *pol = g_new0(struct sg_policy, 1);

	pol->refcount = 1;
	pol->path = g_strdup(path);
	pol->internal_domains = g_ptr_array_new_with_free_func(g_free);
	return pol;
}

static void
policy_free(struct sg_policy *pol)
{
	g_free(pol->path);
	g_free(pol->gateway.socket);
	g_free(pol->gateway.keystore);
	g_free(pol->gateway.spool_dir);
	g_ptr_array_free(pol->internal_domains, TRUE);
	g_free(pol);
}

/* Reads the file into a YAML document; reports syntax errors. */
static bool
parse_file(struct loader *ld)
{
	yaml_parser_t parser;
	yaml_mark_t mark = { 0, 0, 0 };
	FILE *fp;
	bool ok = false;

	fp = fopen(ld->path, "rb");
	if (fp == NULL) {
		g_ptr_array_add(ld->errors, g_strdup_printf("%s: cannot open: %s",
		    ld->path, g_strerror(errno)));
		return false;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &ld->doc)) {
		const char *problem = parser.problem ? parser.problem : "syntax error";

		if (parser.context != NULL)
			report(ld, parser.problem_mark, "YAML: %s %s", problem,
			    parser.context);
		else
			report(ld, parser.problem_mark, "YAML: %s", problem);
	} else if (yaml_document_get_root_node(&ld->doc) == NULL) {
		report(ld, mark, "the policy file is empty");
		yaml_document_delete(&ld->doc);
	} else {
		ok = true;
	}
	yaml_parser_delete(&parser);
	fclose(fp);
	return ok;
}

int
sg_policy_load(const char *path, GPtrArray *errors, struct sg_policy **out)
{
	struct loader ld = { 0 };
	yaml_node_t *root;
	guint nerr = errors->len;

	ld.path = path;
	ld.errors = errors;
	ld.dir = g_path_get_dirname(path);
	ld.pol = policy_new(path);
	apply_defaults(&ld, root_keys);

	if (parse_file(&ld)) {
		root = yaml_document_get_root_node(&ld.doc);
		ld.nnodes = (int)(ld.doc.nodes.top - ld.doc.nodes.start);
		ld.seen = g_malloc0((gsize)ld.nnodes + 1);
		if (root->type != YAML_MAPPING_NODE) {
			report(&ld, root->start_mark,
			    "the policy must be a mapping of keys");
		} else {
			visit(&ld, 1, root);
			load_map(&ld, root_keys, 1, "");
		}
		if (errors->len == nerr && ld.pol->version != 1)
			report(&ld, root->start_mark,
			    "unsupported policy version %d (expected 1)",
			    ld.pol->version);
		g_free(ld.seen);
		yaml_document_delete(&ld.doc);
	}
	g_free(ld.dir);
	if (errors->len > nerr) {
		policy_free(ld.pol);
		return SG_ECONFIG;
	}
	*out = ld.pol;
	return SG_OK;
}

const char *
sg_policy_default_path(void)
{
	const char *env = getenv("SEALGATE_CONFIG");

	return env != NULL && *env ? env : SG_DEFAULT_CONFIG;
}

struct sg_policy *
sg_policy_ref(struct sg_policy *pol)
{
	if (pol != NULL)
		g_atomic_int_inc(&pol->refcount);
	return pol;
}

void
sg_policy_unref(struct sg_policy *pol)
{
	if (pol != NULL && g_atomic_int_dec_and_test(&pol->refcount))
		policy_free(pol);
}

bool
sg_policy_is_internal(const struct sg_policy *pol, const char *addr)
{
	const char *domain = strrchr(addr, '@');

	if (domain == NULL)
		return false;
	domain++;
	for (guint i = 0; i < pol->internal_domains->len; i++)
		if (g_ascii_strcasecmp(domain,
		    g_ptr_array_index(pol->internal_domains, i)) == 0)
			return true;
	return false;
}

bool
sg_policy_allows_method(const struct sg_methods *m, enum sg_method method)
{
	for (unsigned i = 0; i < m->n; i++)
		if (m->v[i] == (int)method)
			return true;
	return false;
}

static void
describe(FILE *fp, const struct key *keys, const char *prefix)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		char *name = *prefix ? g_strdup_printf("%s.%s", prefix, k->name)
		    : g_strdup(k->name);

		if (k->type == KT_MAP) {
			fprintf(fp, "%-34s %s\n", name, k->help);
			describe(fp, k->children, name);
		} else {
			fprintf(fp, "%-34s %s; %s%s%s%s\n", name, type_name(k->type),
			    k->help, k->required ? " (required)" : "",
			    k->dflt && *k->dflt ? "; default: " : "",
			    k->dflt && *k->dflt ? k->dflt : "");
		}
		g_free(name);
	}
}

void
sg_policy_describe(FILE *fp)
{
	describe(fp, root_keys, "");
}
