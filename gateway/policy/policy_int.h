/* Internals shared by the policy loader (policy.c) and the schema
 * (policy_schema.c). Not used elsewhere. */
#ifndef SEALGATE_POLICY_INT_H
#define SEALGATE_POLICY_INT_H

#include <stddef.h>

#include <yaml.h>

#include "sealgate/policy.h"

enum key_type {
	KT_MAP,
	KT_INT,
	KT_BOOL,
	KT_STRING,
	KT_PATH,     /* string; relative paths resolved against the file's dir */
	KT_SIZE,     /* integer with optional K/M/G suffix */
	KT_DURATION, /* seconds, or a number with s/m/h/d (long long) */
	KT_ENUM,
	KT_REGEX,    /* string compiled with GRegex, case-insensitive */
	KT_DOMAINS,  /* list of domain names (a single one may stand alone) */
	KT_STRINGS,  /* list of strings (a single one may stand alone) */
	KT_GLOBS,    /* list of address or domain globs (domains as A-labels) */
	KT_FILE_LOGINS, /* path of a sender-login file, read and checked */
	KT_METHODS,  /* list of method names */
	KT_CIDRS,    /* list of networks */
	KT_RULES,    /* list of rules */
	KT_USER,     /* name of a user of this system */
	KT_GROUP,    /* name of a group of this system */
	KT_MODE,     /* permissions in octal, none for others (int) */
	KT_LISTEN,   /* HOST:PORT to listen on (string, literal address) */
};

struct enum_value {
	const char *name;
	int value;
};

struct loader;
struct key;

/* Extra check of an enum value (e.g. an action this version lacks). */
typedef bool (*key_check)(struct loader *ld, const struct key *k, int value,
			  yaml_mark_t mark);

struct key {
	const char *name;
	enum key_type type;
	size_t offset;               /* into the struct being filled */
	const struct key *children;  /* KT_MAP (same struct), KT_RULES (rule) */
	const struct enum_value *values; /* KT_ENUM, KT_METHODS */
	const char *dflt;            /* NULL: no default */
	bool required;
	const char *help;
	key_check check;             /* KT_ENUM: NULL or an extra check */
	bool own;                    /* KT_DOMAINS: the organisation's own, so
	                              * no public suffix (.co.uk) */
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
	GHashTable *rule_names;
};

extern const struct key sg_policy_root_keys[];
extern const struct enum_value sg_action_values[];
extern const struct enum_value sg_method_values[];
extern const struct enum_value sg_on_missing_values[];

void sg_policy_report(struct loader *ld, yaml_mark_t mark, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Fills base (a struct described by keys) from the mapping node id; the
 * keys present go to present (name -> yaml_mark_t *) when not NULL. */
void sg_policy_load_map(struct loader *ld, const struct key *keys, int id,
			const char *where, void *base, GHashTable *present);

/* Applies the defaults of keys to base. */
void sg_policy_apply_defaults(struct loader *ld, const struct key *keys,
			      void *base);

/* Loads one item of outbound.rules (node id), checking it as a whole. */
/* Typed values from text (policy_values.c); -1 / NULL / false when the
 * text is not one. Sizes in bytes ("50M"), durations in seconds ("1h"). */
int sg_policy_parse_size(const char *s, long long *out);
int sg_policy_parse_duration(const char *s, long long *out);
/* A domain, or an address or domain glob, in the form envelope addresses
 * are compared in: lower case, A-labels. (transfer full) */
char *sg_policy_domain_item(const char *text);
/* Whether a domain item (as sg_policy_domain_item returns it) names a
 * public suffix of the Public Suffix List (wildcard rules included): a
 * subdomain item (".co.uk") one of either section, a domain one of the
 * ICANN section (a private entry such as "github.io" is its owner's own
 * domain too). The list installed with Debian's publicsuffix, or libpsl's
 * own when it is newer or missing. */
bool sg_policy_public_suffix(const char *item);
char *sg_policy_glob_item(const char *text);
bool sg_policy_parse_cidr(const char *text, struct sg_cidr *out);
/* Permissions written like chmod's, three or four octal digits ("0660");
 * -1 when the text is not that. Special bits (4000, 2000, 1000) are
 * returned as written, for the caller to refuse. */
int sg_policy_parse_mode(const char *s, int *out);

void sg_policy_load_rule(struct loader *ld, int id, unsigned index);

void sg_rule_free(struct sg_rule *rule);

#endif
