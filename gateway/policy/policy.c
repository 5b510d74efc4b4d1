/* Policy file loader: walks the YAML document against the key tables of
 * policy_schema.c, reporting every problem as FILE:LINE:COL: message, and
 * fills a struct sg_policy. Defaults are the tables' default strings,
 * parsed by the same code as the file's values. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "policy_int.h"
#include "sealgate/logins.h"

void
sg_config_problemv(GPtrArray *errors, const char *path, size_t line,
		   size_t col, const char *fmt, va_list ap)
{
	char *msg = g_strdup_vprintf(fmt, ap);

	g_ptr_array_add(errors, g_strdup_printf("%s:%zu:%zu: %s", path, line,
	    col, msg));
	g_free(msg);
}

void
sg_policy_report(struct loader *ld, yaml_mark_t mark, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sg_config_problemv(ld->errors, ld->path, mark.line + 1, mark.column + 1,
	    fmt, ap);
	va_end(ap);
}

#define report sg_policy_report

static const char *
type_name(enum key_type t)
{
	switch (t) {
	case KT_MAP:		return "a mapping";
	case KT_INT:		return "an integer";
	case KT_BOOL:		return "true or false";
	case KT_SIZE:		return "a size";
	case KT_DURATION:	return "a duration";
	case KT_REGEX:		return "a regular expression";
	case KT_DOMAINS:	return "a list of domains";
	case KT_STRINGS:	return "a list of strings";
	case KT_GLOBS:		return "a list of address or domain globs";
	case KT_FILE_LOGINS:	return "a file name";
	case KT_METHODS:	return "a list of methods";
	case KT_CIDRS:		return "a list of networks";
	case KT_RULES:		return "a list of rules";
	case KT_USER:		return "a user name";
	case KT_GROUP:		return "a group name";
	case KT_MODE:		return "a file mode";
	case KT_LISTEN:		return "an address and port";
	default:		return "a string";
	}
}

static void *
field(void *base, const struct key *k)
{
	return (char *)base + k->offset;
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

/* gateway.sender_logins: the path (relative to the policy file) and the
 * map read from it; problems inside the file are reported at their own
 * FILE:LINE:COL, a file that cannot be read where the policy names it. */
static bool
set_logins(struct loader *ld, const struct key *k, void *base,
	   const char *text, yaml_mark_t mark)
{
	struct sg_err err = { 0 };
	struct sg_logins *logins = NULL;
	char *path;

	if (*text == '\0') {
		report(ld, mark, "\"%s\" must not be empty", k->name);
		return false;
	}
	path = g_path_is_absolute(text) ? g_strdup(text)
	    : g_build_filename(ld->dir, text, NULL);
	switch (sg_logins_load(path, ld->errors, &err, &logins)) {
	case SG_OK:
		break;
	case SG_ECONFIG:
		g_free(path);
		return false;
	default:
		report(ld, mark, "\"%s\": %s", k->name, err.msg);
		g_free(path);
		return false;
	}
	g_free(*(char **)field(base, k));
	*(char **)field(base, k) = path;
	sg_logins_free(ld->pol->logins);
	ld->pol->logins = logins;
	return true;
}

/* A user or group name the system knows (looked up when the policy is
 * read: the daemon would otherwise find out only at start-up). */
static bool
set_account(struct loader *ld, const struct key *k, void *base,
	    const char *text, yaml_mark_t mark)
{
	bool user = k->type == KT_USER;

	if (*text == '\0') {
		report(ld, mark, "\"%s\" must not be empty", k->name);
		return false;
	}
	if (user ? !sg_policy_lookup_user(text, NULL, NULL) :
	    !sg_policy_lookup_group(text, NULL)) {
		report(ld, mark, "\"%s\": unknown %s \"%s\"", k->name,
		    user ? "user" : "group", text);
		return false;
	}
	g_free(*(char **)field(base, k));
	*(char **)field(base, k) = g_strdup(text);
	return true;
}

/* Permissions of the milter's socket: whoever may connect can have mail
 * signed as its sender or decrypted, so others get nothing. */
static bool
set_mode(struct loader *ld, const struct key *k, void *base,
	 const char *text, yaml_mark_t mark)
{
	int mode;

	if (sg_policy_parse_mode(text, &mode) < 0) {
		report(ld, mark, "\"%s\": invalid mode \"%s\" (expected three "
		    "or four octal digits, such as 0660)", k->name, text);
		return false;
	}
	if (mode & 07000) {
		report(ld, mark, "\"%s\": mode %s has special bits (set-user-ID, "
		    "set-group-ID or sticky); give permissions only, such as 0660",
		    k->name, text);
		return false;
	}
	if (mode & 0007) {
		report(ld, mark, "\"%s\": mode %s lets every local user connect "
		    "to the milter and have mail signed or decrypted; give others "
		    "nothing, such as 0660", k->name, text);
		return false;
	}
	*(int *)field(base, k) = mode;
	return true;
}

/* Sets a scalar key from its text. Returns false (after reporting) when
 * the text is not a valid value. */
static bool
set_scalar(struct loader *ld, const struct key *k, void *base,
	   const char *text, yaml_mark_t mark)
{
	const struct enum_value *ev;
	struct sockaddr_storage ss;
	socklen_t sslen;
	GError *gerr = NULL;
	long long size;
	char *end, *names;
	GRegex *re;
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
		*(int *)field(base, k) = (int)v;
		return true;
	case KT_BOOL:
		if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0) {
			*(bool *)field(base, k) = true;
		} else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0) {
			*(bool *)field(base, k) = false;
		} else {
			report(ld, mark, "\"%s\" must be true or false", k->name);
			return false;
		}
		return true;
	case KT_FILE_LOGINS:
		return set_logins(ld, k, base, text, mark);
	case KT_USER:
	case KT_GROUP:
		return set_account(ld, k, base, text, mark);
	case KT_MODE:
		return set_mode(ld, k, base, text, mark);
	case KT_LISTEN:
		if (!sg_policy_parse_listen(text, &ss, &sslen)) {
			report(ld, mark, "\"%s\": invalid address \"%s\" (expected "
			    "IPV4:PORT or [IPV6]:PORT, such as 127.0.0.1:9108)",
			    k->name, text);
			return false;
		}
		g_free(*(char **)field(base, k));
		*(char **)field(base, k) = g_strdup(text);
		return true;
	case KT_STRING:
	case KT_PATH:
		if (*text == '\0') {
			report(ld, mark, "\"%s\" must not be empty", k->name);
			return false;
		}
		g_free(*(char **)field(base, k));
		if (k->type == KT_PATH && !g_path_is_absolute(text))
			*(char **)field(base, k) = g_build_filename(ld->dir, text, NULL);
		else
			*(char **)field(base, k) = g_strdup(text);
		return true;
	case KT_REGEX:
		re = g_regex_new(text, G_REGEX_CASELESS | G_REGEX_OPTIMIZE, 0, &gerr);
		if (re == NULL) {
			report(ld, mark, "invalid regular expression \"%s\": %s", text,
			    gerr->message);
			g_error_free(gerr);
			return false;
		}
		/* The pattern text sits at offset, the compiled one right after. */
		g_free(*(char **)field(base, k));
		*(char **)field(base, k) = g_strdup(text);
		if (*(GRegex **)((char *)field(base, k) + sizeof(char *)) != NULL)
			g_regex_unref(*(GRegex **)((char *)field(base, k) +
			    sizeof(char *)));
		*(GRegex **)((char *)field(base, k) + sizeof(char *)) = re;
		return true;
	case KT_SIZE:
		if (sg_policy_parse_size(text, &size) < 0 || size == 0) {
			report(ld, mark, "\"%s\": invalid size \"%s\" "
			    "(expected a number with optional K, M or G)",
			    k->name, text);
			return false;
		}
		*(long long *)field(base, k) = size;
		return true;
	case KT_DURATION:
		if (sg_policy_parse_duration(text, &size) < 0 || size == 0) {
			report(ld, mark, "\"%s\": invalid duration \"%s\" "
			    "(expected a number of seconds, or with s, m, h or d; "
			    "more than 0, at most 366d)", k->name, text);
			return false;
		}
		*(long long *)field(base, k) = size;
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
		if (k->check != NULL && !k->check(ld, k, ev->value, mark))
			return false;
		*(int *)field(base, k) = ev->value;
		return true;
	default:
		return false;
	}
}

static bool
is_list(enum key_type t)
{
	return t == KT_DOMAINS || t == KT_STRINGS || t == KT_GLOBS ||
	    t == KT_METHODS ||
	    t == KT_CIDRS;
}

/* Adds one item of a list key. */
static bool
add_item(struct loader *ld, const struct key *k, void *base, const char *text,
	 yaml_mark_t mark)
{
	const struct enum_value *ev;
	struct sg_methods *m;
	struct sg_cidr cidr;
	GPtrArray **list;
	char *names;

	char *item;

	switch (k->type) {
	case KT_DOMAINS:
	case KT_STRINGS:
	case KT_GLOBS:
		if (*text == '\0') {
			report(ld, mark, "empty item in \"%s\"", k->name);
			return false;
		}
		item = k->type == KT_DOMAINS ? sg_policy_domain_item(text)
		    : k->type == KT_GLOBS ? sg_policy_glob_item(text) : g_strdup(text);
		if (item == NULL) {
			report(ld, mark, "invalid %s \"%s\" in \"%s\"",
			    k->type == KT_DOMAINS ? "domain" : "address or domain "
			    "glob", text, k->name);
			return false;
		}
		if (k->own && sg_policy_public_suffix(item)) {
			report(ld, mark, "\"%s\" in \"%s\" is a public suffix, "
			    "under which anyone can register a domain: every "
			    "address there would count as the organisation's",
			    text, k->name);
			g_free(item);
			return false;
		}
		list = field(base, k);
		if (*list == NULL)
			*list = g_ptr_array_new_with_free_func(g_free);
		g_ptr_array_add(*list, item);
		return true;
	case KT_CIDRS:
		if (!sg_policy_parse_cidr(text, &cidr)) {
			report(ld, mark, "invalid network \"%s\" in \"%s\" (expected "
			    "an address or ADDRESS/PREFIX)", text, k->name);
			return false;
		}
		g_array_append_val(*(GArray **)field(base, k), cidr);
		return true;
	default:
		break;
	}
	m = field(base, k);
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
clear_list(void *base, const struct key *k)
{
	GPtrArray **list;

	switch (k->type) {
	case KT_DOMAINS:
	case KT_STRINGS:
	case KT_GLOBS:
		list = field(base, k);
		if (*list != NULL)
			g_ptr_array_set_size(*list, 0);
		break;
	case KT_CIDRS:
		g_array_set_size(*(GArray **)field(base, k), 0);
		break;
	default:
		((struct sg_methods *)field(base, k))->n = 0;
		break;
	}
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

static void
load_list(struct loader *ld, const struct key *k, void *base, int id,
	  yaml_node_t *n)
{
	clear_list(base, k);
	if (n->type == YAML_SCALAR_NODE && k->type != KT_METHODS) {
		add_item(ld, k, base, (const char *)n->data.scalar.value,
		    n->start_mark);
		return;
	}
	if (n->type != YAML_SEQUENCE_NODE) {
		report(ld, n->start_mark, "\"%s\" must be %s", k->name,
		    type_name(k->type));
		return;
	}
	(void)id;
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
		add_item(ld, k, base, (const char *)item->data.scalar.value,
		    item->start_mark);
	}
	if (k->type == KT_METHODS && ((struct sg_methods *)field(base, k))->n == 0)
		report(ld, n->start_mark, "\"%s\" must not be empty", k->name);
}

static void
load_rules(struct loader *ld, const struct key *k, yaml_node_t *n)
{
	unsigned index = 0;

	if (n->type != YAML_SEQUENCE_NODE) {
		report(ld, n->start_mark, "\"%s\" must be %s", k->name,
		    type_name(k->type));
		return;
	}
	for (yaml_node_item_t *it = n->data.sequence.items.start;
	     it < n->data.sequence.items.top; it++) {
		if (!visit(ld, *it, node(ld, *it)))
			continue;
		sg_policy_load_rule(ld, *it, ++index);
	}
}

static void
load_value(struct loader *ld, const struct key *k, int id, const char *where,
	   void *base)
{
	yaml_node_t *n = node(ld, id);
	char *sub;

	if (!visit(ld, id, n))
		return;
	if (k->type == KT_MAP) {
		if (n->type != YAML_MAPPING_NODE) {
			report(ld, n->start_mark, "\"%s\" must be a mapping", k->name);
			return;
		}
		sub = *where ? g_strdup_printf("%s.%s", where, k->name)
		    : g_strdup(k->name);
		sg_policy_load_map(ld, k->children, id, sub, base, NULL);
		g_free(sub);
	} else if (k->type == KT_RULES) {
		load_rules(ld, k, n);
	} else if (is_list(k->type)) {
		load_list(ld, k, base, id, n);
	} else if (n->type != YAML_SCALAR_NODE) {
		report(ld, n->start_mark, "\"%s\" must be %s", k->name,
		    type_name(k->type));
	} else {
		set_scalar(ld, k, base, (const char *)n->data.scalar.value,
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

void
sg_policy_load_map(struct loader *ld, const struct key *keys, int id,
		   const char *where, void *base, GHashTable *present)
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
		if (present != NULL)
			g_hash_table_insert(present, g_strdup(name),
			    g_memdup2(&kn->start_mark, sizeof(kn->start_mark)));
		k = key_find(keys, name);
		if (k == NULL) {
			if (*where)
				report(ld, kn->start_mark,
				    "unknown key \"%s\" in \"%s\"", name, where);
			else
				report(ld, kn->start_mark, "unknown key \"%s\"", name);
			continue;
		}
		load_value(ld, k, p->value, where, base);
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

void
sg_policy_apply_defaults(struct loader *ld, const struct key *keys, void *base)
{
	yaml_mark_t none = { 0, 0, 0 };

	for (const struct key *k = keys; k->name != NULL; k++) {
		if (k->type == KT_MAP) {
			sg_policy_apply_defaults(ld, k->children, base);
		} else if (is_list(k->type)) {
			char **items;

			if (k->dflt == NULL)
				continue;
			items = g_strsplit(k->dflt, ",", -1);
			for (char **it = items; *it != NULL; it++)
				if (**it)
					add_item(ld, k, base, *it, none);
			g_strfreev(items);
		} else if (k->dflt != NULL) {
			set_scalar(ld, k, base, k->dflt, none);
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
	pol->gateway.trusted_networks = g_array_new(FALSE, TRUE,
	    sizeof(struct sg_cidr));
	pol->gateway.signing_networks = g_array_new(FALSE, TRUE,
	    sizeof(struct sg_cidr));
	pol->rules = g_ptr_array_new_with_free_func((GDestroyNotify)sg_rule_free);
	pol->out_default.smime_cipher = -1;     /* by capabilities */
	return pol;
}

static void
policy_free(struct sg_policy *pol)
{
	g_free(pol->path);
	g_free(pol->gateway.socket);
	g_free(pol->gateway.socket_group);
	g_free(pol->gateway.user);
	g_free(pol->gateway.group);
	g_free(pol->gateway.keystore);
	g_free(pol->gateway.spool_dir);
	g_array_free(pol->gateway.trusted_networks, TRUE);
	g_array_free(pol->gateway.signing_networks, TRUE);
	g_free(pol->gateway.sender_logins);
	g_free(pol->gateway.metrics);
	sg_logins_free(pol->logins);
	g_ptr_array_free(pol->internal_domains, TRUE);
	g_ptr_array_free(pol->rules, TRUE);
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

/* LINE and COL of a "PATH:LINE:COL: ..." message, for sorting. */
static void
error_position(const char *e, size_t plen, unsigned long *line,
	       unsigned long *col)
{
	*line = *col = 0;
	if (strlen(e) > plen)
		sscanf(e + plen, ":%lu:%lu:", line, col);
}

static const char *sort_path;

static gint
cmp_errors(gconstpointer a, gconstpointer b)
{
	size_t plen = strlen(sort_path);
	unsigned long la, ca, lb, cb;

	error_position(*(char *const *)a, plen, &la, &ca);
	error_position(*(char *const *)b, plen, &lb, &cb);
	if (la != lb)
		return la < lb ? -1 : 1;
	return ca < cb ? -1 : ca > cb;
}

/* Puts this file's errors (from index first on) in file order; a stable
 * insertion sort, as the lists are short. */
static void
sort_errors(GPtrArray *errors, guint first, const char *path)
{
	static GMutex lock;

	g_mutex_lock(&lock);
	sort_path = path;
	for (guint i = first + 1; i < errors->len; i++) {
		gpointer cur = g_ptr_array_index(errors, i);
		guint j = i;

		while (j > first &&
		    cmp_errors(&g_ptr_array_index(errors, j - 1), &cur) > 0) {
			g_ptr_array_index(errors, j) = g_ptr_array_index(errors, j - 1);
			j--;
		}
		g_ptr_array_index(errors, j) = cur;
	}
	g_mutex_unlock(&lock);
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
	ld.rule_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	    NULL);
	sg_policy_apply_defaults(&ld, sg_policy_root_keys, ld.pol);

	if (parse_file(&ld)) {
		root = yaml_document_get_root_node(&ld.doc);
		ld.nnodes = (int)(ld.doc.nodes.top - ld.doc.nodes.start);
		ld.seen = g_malloc0((gsize)ld.nnodes + 1);
		if (root->type != YAML_MAPPING_NODE) {
			report(&ld, root->start_mark,
			    "the policy must be a mapping of keys");
		} else {
			visit(&ld, 1, root);
			sg_policy_load_map(&ld, sg_policy_root_keys, 1, "", ld.pol,
			    NULL);
		}
		if (errors->len == nerr && ld.pol->version != 1)
			report(&ld, root->start_mark,
			    "unsupported policy version %d (expected 1)",
			    ld.pol->version);
		g_free(ld.seen);
		yaml_document_delete(&ld.doc);
	}
	g_free(ld.dir);
	g_hash_table_destroy(ld.rule_names);
	sort_errors(errors, nerr, path);
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
