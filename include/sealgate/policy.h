/* The policy: an immutable, reference-counted snapshot of the YAML policy
 * file. Every key is described once, in the table in gateway/policy.c, which
 * drives parsing, validation and `sealgate policy keys` documentation. */
#ifndef SEALGATE_POLICY_H
#define SEALGATE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <glib.h>

#include "sealgate/error.h"

#define SG_DEFAULT_CONFIG "/etc/sealgate/policy.yaml"

enum sg_action {
	SG_ACTION_NONE = 0,
	SG_ACTION_ENCRYPT_IF_KEY,
};

enum sg_method {
	SG_METHOD_OPENPGP = 0,
	SG_METHOD_SMIME,
};

#define SG_MAX_METHODS 2

struct sg_methods {
	int v[SG_MAX_METHODS]; /* enum sg_method, in order of preference */
	unsigned n;
};

struct sg_policy {
	gint refcount;
	char *path;             /* the file it was read from */
	int version;
	struct {
		char *socket;
		char *keystore;         /* absolute */
		char *spool_dir;        /* absolute */
		long long max_message_size; /* bytes */
	} gateway;
	GPtrArray *internal_domains; /* char *, lower case */
	struct {
		int action;             /* enum sg_action */
		struct sg_methods methods;
	} out_default;
};

/* Reads and validates path. On success *out holds a snapshot with one
 * reference (transfer full). On failure returns SG_ECONFIG and appends one
 * "FILE:LINE:COL: message" string per problem to errors (char *, the
 * caller frees them); *out is untouched. */
int sg_policy_load(const char *path, GPtrArray *errors, struct sg_policy **out);

/* The file sealgate reads when no -c is given: $SEALGATE_CONFIG, else
 * SG_DEFAULT_CONFIG. */
const char *sg_policy_default_path(void);

struct sg_policy *sg_policy_ref(struct sg_policy *pol);
void sg_policy_unref(struct sg_policy *pol);

/* True when addr's domain is one of internal_domains (case-insensitive). */
bool sg_policy_is_internal(const struct sg_policy *pol, const char *addr);

/* True when method is among the methods allowed by the default action. */
bool sg_policy_allows_method(const struct sg_methods *m, enum sg_method method);

/* Writes every key with its type, default and help text. */
void sg_policy_describe(FILE *fp);

#endif
