/* The policy: an immutable, reference-counted snapshot of the YAML policy
 * file. Every key is described once, in the table in gateway/policy.c, which
 * drives parsing, validation and `sealgate policy keys` documentation. */
#ifndef SEALGATE_POLICY_H
#define SEALGATE_POLICY_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <glib.h>

#include "sealgate/error.h"

#define SG_DEFAULT_CONFIG "/etc/sealgate/policy.yaml"

/* gateway.log_format: the form of the milter's line per message. */
enum sg_log_format {
	SG_LOG_FORMAT_TEXT = 0,
	SG_LOG_FORMAT_JSON,
};

enum sg_action {
	SG_ACTION_NONE = 0,
	SG_ACTION_SIGN,
	SG_ACTION_ENCRYPT,
	SG_ACTION_SIGN_ENCRYPT,
	SG_ACTION_ENCRYPT_IF_KEY,
};

enum sg_method {
	SG_METHOD_OPENPGP = 0,
	SG_METHOD_SMIME,
};

/* What a mandatory action does when a recipient has no usable key. */
enum sg_on_missing {
	SG_MISSING_REJECT = 0,
	SG_MISSING_TEMPFAIL,
	SG_MISSING_SEND_PLAIN,
};

#define SG_MAX_METHODS 2

struct sg_methods {
	int v[SG_MAX_METHODS]; /* enum sg_method, in order of preference */
	unsigned n;
};

/* An IPv4 or IPv6 network. */
struct sg_cidr {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

/* The conditions of a rule; every one that is set must hold. */
struct sg_cond {
	GPtrArray *sender;           /* char *: address or domain globs */
	GPtrArray *recipient;        /* char *: address or domain globs */
	GPtrArray *recipient_domain; /* char *: domains, lower case */
	char *subject_tag;
	struct {
		char *name;
		char *matches;       /* the pattern as written */
		GRegex *re;          /* compiled, case-insensitive */
	} header;
	GPtrArray *label;            /* char *: MIP label names */
	long long size_over;         /* bytes; 0: not set */
};

/* How S/MIME recipients' keys wrap the content key. */
enum sg_key_transport {
	SG_KT_RSA_PKCS1 = 0,
	SG_KT_RSA_OAEP,
};

struct sg_rule {
	char *name;
	struct sg_cond when;
	int action;                  /* enum sg_action */
	struct sg_methods methods;   /* n == 0: the default's */
	int on_missing_key;          /* enum sg_on_missing */
	int smime_cipher;            /* enum sg_smime_cipher, -1: default's */
	int smime_key_transport;     /* enum sg_key_transport, -1: default's */
	bool strip_tag;
	unsigned line;               /* where it starts in the file, from 1 */
};

/* The decision a rule or the default yields. */
struct sg_decision {
	const char *rule;            /* rule name, NULL for the default */
	int action;
	const struct sg_methods *methods;
	int on_missing_key;
	int smime_cipher;            /* -1: by the recipients' capabilities */
	bool smime_cipher_rule;      /* set by the rule, not the default */
	int smime_key_transport;
	bool strip_tag;
	const char *subject_tag;     /* the rule's tag, to strip */
};

struct sg_policy {
	gint refcount;
	char *path;             /* the file it was read from */
	int version;
	struct {
		char *socket;
		int socket_mode;        /* permissions of a unix socket */
		char *socket_group;     /* its group; NULL: the milter's */
		char *user;             /* run as (started as root); NULL: unset */
		char *group;            /* run as; NULL: the user's own */
		char *keystore;         /* absolute */
		char *spool_dir;        /* absolute */
		long long max_message_size; /* bytes */
		GArray *trusted_networks;   /* struct sg_cidr */
		GArray *signing_networks;   /* struct sg_cidr: sign without login */
		char *sender_logins;        /* absolute path, NULL: none */
		bool allow_vulnerable_openssl; /* run below the floor */
		char *metrics;          /* "HOST:PORT" of the metrics endpoint;
					 * NULL: off */
		int log_format;         /* enum sg_log_format */
	} gateway;
	struct sg_logins *logins;    /* gateway.sender_logins read, or NULL */
	GPtrArray *internal_domains; /* char *, lower case; ".d": subdomains */
	struct {
		int action;             /* enum sg_action */
		struct sg_methods methods;
		int on_missing_key;
		int smime_cipher;       /* -1: not set */
		int smime_key_transport;
	} out_default;
	GPtrArray *rules;            /* struct sg_rule *, first match wins */
	struct {
		bool decrypt;
		bool verify;
		bool require_integrity;     /* refuse CBC S/MIME without signature */
		long long max_decrypted_size;
		bool subject_tags;          /* [decrypted], [signed OK], ... */
		bool allow_3des;            /* accept 3DES S/MIME content */
		long long signature_date_tolerance; /* seconds */
	} inbound;
};

/* Appends "PATH:LINE:COL: message" to errors (char *, the caller frees
 * them): the one form every problem in a configuration file is told in. */
void sg_config_problemv(GPtrArray *errors, const char *path, size_t line,
			size_t col, const char *fmt, va_list ap)
	__attribute__((format(printf, 5, 0)));

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

/* True when domain is the policy's domain item: the same name
 * (case-insensitive), or for an item ".example.com" any subdomain of
 * example.com (not example.com itself), as Postfix's
 * parent_domain_matches_subdomains does. */
bool sg_policy_domain_matches(const char *item, const char *domain);

/* True when addr's domain is one of internal_domains
 * (sg_policy_domain_matches). */
bool sg_policy_is_internal(const struct sg_policy *pol, const char *addr);

/* True when method is in the list. */
bool sg_policy_allows_method(const struct sg_methods *m, enum sg_method method);

/* True when ip (text form) is in gateway.trusted_networks. */
bool sg_policy_trusted_ip(const struct sg_policy *pol, const char *ip);

/* Whether the system knows a user (group) of that name; its ids go to
 * uid and gid when not NULL. */
bool sg_policy_lookup_user(const char *name, uid_t *uid, gid_t *gid);
bool sg_policy_lookup_group(const char *name, gid_t *gid);

/* An address to listen on, "IPV4:PORT" or "[IPV6]:PORT" (literal
 * addresses only: nothing is looked up), into ss; false when the text is
 * not one. */
bool sg_policy_parse_listen(const char *text, struct sockaddr_storage *ss,
			    socklen_t *len);

/* True when ip (text form, may be NULL) is in one of nets (struct sg_cidr). */
bool sg_policy_ip_in(const GArray *nets, const char *ip);

/*
 * Whether the client of an outbound transaction may sign as sender (a
 * canonical address) -- DESIGN.md §4 rule 8. With an SMTP AUTH login, only
 * the login decides: it must own the address in gateway.sender_logins
 * (the address's own line, else its "@domain" line; an address the file
 * does not name is owned by nobody), or without that file be the address
 * or its local part (case-insensitive, canonical forms). Without a login
 * the client must be in gateway.signing_networks. When not, why (len
 * bytes) says why not.
 */
bool sg_policy_may_sign(const struct sg_policy *pol, const char *sender,
			const char *login, const char *client_ip, char *why,
			size_t len);

/* True for sign, encrypt and sign-encrypt: a missing key is not tolerated
 * silently. */
bool sg_action_mandatory(int action);

const char *sg_action_name(int action);
const char *sg_method_name(int method);
const char *sg_on_missing_name(int on_missing);

/* Writes every key with its type, default and help text: one line per
 * key, or as roff (.TP paragraphs) for the manual page sealgate-policy(5). */
void sg_policy_describe(FILE *fp);
void sg_policy_describe_man(FILE *fp);

#endif
