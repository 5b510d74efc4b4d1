/* `sealgate keys import|list`: the administrator's view of the keystore. */
#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "sealgate/addr.h"
#include "sealgate/msg.h"
#include "sealgate/openpgp.h"
#include "sealgate/smime.h"
#include "sealgate.h"

/* The keystore being listed, for the deactivated state. */
static const struct sg_keystore *listed;

static const char *
state_of(const char *addr, const char *state)
{
	return listed != NULL && strcmp(state, "active") == 0 &&
	    sg_keystore_deactivated(listed, addr) ? "deactivated" : state;
}

struct import_opts {
	char *passphrase;       /* first line of --passphrase-file */
	int smime_flags;        /* SG_SMIME_TRUST_ANCHOR, SG_SMIME_DRY_RUN */
	bool dry_run;
	struct sg_internal internal; /* the policy's internal addresses */
};

/* An address of a user id or certificate is internal when it is written
 * in canonical form (as an envelope recipient that finds the key is) and
 * its domain is one of internal_domains. */
static bool
internal_addr(const char *addr, void *arg)
{
	const struct sg_policy *pol = arg;
	struct sg_err err = { 0 };
	char *canon = NULL;
	bool yes;

	if (sg_addr_canon_rcpt(addr, &canon, &err) < 0)
		return false;
	yes = g_ascii_strcasecmp(canon, addr) == 0 &&
	    sg_policy_is_internal(pol, canon);
	g_free(canon);
	return yes;
}

struct list_opts {
	int expiring_days;      /* -1: list everything */
	bool json;
	bool secret;            /* export --secret */
};

static void
format_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t == 0) {
		g_strlcpy(buf, "never", len);
		return;
	}
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

/* One line of `keys list`, for the text and the JSON form. */
struct row {
	char *addr, *method, *fpr, *state, *usable, *why;
	time_t expires;
};

static void
row_free(gpointer p)
{
	struct row *r = p;

	g_free(r->addr);
	g_free(r->method);
	g_free(r->fpr);
	g_free(r->state);
	g_free(r->usable);
	g_free(r->why);
	g_free(r);
}

static void
add_row(GPtrArray *rows, const char *addr, const char *method,
	const char *fpr, const char *state, time_t expires, const char *usable,
	const char *why)
{
	struct row *r = g_new0(struct row, 1);

	r->addr = g_strdup(addr);
	r->method = g_strdup(method);
	r->fpr = g_strdup(fpr);
	r->state = g_strdup(state_of(addr, state));
	r->expires = expires;
	r->usable = g_strdup(usable);
	r->why = g_strdup(why);
	g_ptr_array_add(rows, r);
}

static void
row_openpgp(const struct sg_openpgp_identity *id, void *arg)
{
	GString *u = g_string_new(NULL);

	if (id->can_encrypt)
		g_string_append(u, "encrypt");
	if (id->can_decrypt)
		g_string_append(u, u->len ? ",decrypt" : "decrypt");
	if (id->can_sign)
		g_string_append(u, u->len ? ",sign" : "sign");
	add_row(arg, id->addr, "openpgp", id->fpr, id->state, id->expires,
	    u->len ? u->str : "-", NULL);
	g_string_free(u, TRUE);
}

static void
row_smime(const struct sg_smime_identity *id, void *arg)
{
	bool active = strcmp(id->state, "active") == 0;
	GString *u = g_string_new(NULL);

	if (id->anchor)
		g_string_append(u, "trust-anchor");
	else if (active)
		g_string_append(u, "encrypt");
	if (id->has_key)
		g_string_append_printf(u, "%sdecrypt%s", u->len ? "," : "",
		    active ? ",sign" : "");
	add_row(arg, id->addr, "smime", id->fpr, id->state, id->expires,
	    u->len ? u->str : "-", id->why);
	g_string_free(u, TRUE);
}

static void
print_row(const char *prefix, const struct row *r)
{
	char expires[32];

	format_date(r->expires, expires, sizeof(expires));
	sg_tprintf(stdout, "%s%-32s %-7s %s %-8s expires=%s usable=%s%s%s\n",
	    prefix != NULL ? prefix : "", r->addr, r->method, r->fpr, r->state,
	    expires, r->usable, r->why ? " reason=" : "", r->why ? r->why : "");
}

/* Import lines: one identity, with "imported" or "unchanged" before it. */
static void
print_openpgp(const struct sg_openpgp_identity *id, void *arg)
{
	GPtrArray *one = g_ptr_array_new_with_free_func(row_free);

	row_openpgp(id, one);
	print_row(arg, g_ptr_array_index(one, 0));
	g_ptr_array_free(one, TRUE);
}

static void
print_smime(const struct sg_smime_identity *id, void *arg)
{
	GPtrArray *one = g_ptr_array_new_with_free_func(row_free);

	row_smime(id, one);
	print_row(arg, g_ptr_array_index(one, 0));
	g_ptr_array_free(one, TRUE);
}

/* OpenPGP data starts with a packet tag (bit 7 set) or with armor. */
static bool
is_openpgp(const char *data, gsize len)
{
	return (len > 0 && ((unsigned char)data[0] & 0x80)) ||
	    g_strstr_len(data, (gssize)MIN(len, 65536), "-----BEGIN PGP") != NULL;
}

static int
import_openpgp(const struct sg_keystore *ks, const char *path,
	       const char *data, gsize len, const struct import_opts *o)
{
	struct sg_openpgp_import res = { 0 };
	struct sg_err err = { 0 };
	unsigned n;

	if (o->dry_run) {
		if (sg_openpgp_check(data, len, &o->internal, &n, &err) < 0) {
			sg_tprintf(stderr, "sealgate: %s: %s\n", path, err.msg);
			return -1;
		}
		if (n == 0) {
			sg_tprintf(stderr, "sealgate: %s: no OpenPGP key found\n", path);
			return -1;
		}
		sg_tprintf(stdout, "%s: %u OpenPGP key(s) checked; nothing imported (dry run)\n",
		    path, n);
		return 0;
	}

	if (sg_openpgp_import(ks, data, len, &o->internal, &res, &err) < 0) {
		sg_tprintf(stderr, "sealgate: %s: %s\n", path, err.msg);
		sg_openpgp_import_clear(&res);
		return -1;
	}
	for (size_t i = 0; res.fprs != NULL && res.fprs[i] != NULL; i++)
		if (sg_openpgp_list(ks, res.fprs[i], print_openpgp,
		    res.changed[i] ? "imported  " : "unchanged ", &err) < 0)
			sg_tprintf(stderr, "sealgate: %s: %s\n", path, err.msg);
	if (res.considered == 0 && res.revocations > 0)
		sg_tprintf(stdout, "%s: %u revocation(s) imported\n", path, res.revocations);
	else
		sg_tprintf(stdout, "%s: %u key(s) read, %u imported, %u unchanged%s%s\n", path,
		    res.considered, res.imported, res.unchanged,
		    res.secret_imported ? ", secret keys imported" : "",
		    res.revocations ? ", revocations imported" : "");
	sg_openpgp_import_clear(&res);
	return 0;
}

static int
import_smime(const struct sg_keystore *ks, const char *path, const char *data,
	     gsize len, const struct import_opts *o)
{
	struct sg_smime_import res = { 0 };
	struct sg_err err = { 0 };

	if (sg_smime_import(ks, data, len, o->passphrase, o->smime_flags,
	    &o->internal, &res, &err) < 0) {
		sg_tprintf(stderr, "sealgate: %s: %s\n", path, err.msg);
		sg_smime_import_clear(&res);
		return -1;
	}
	if (o->dry_run) {
		sg_tprintf(stdout, "%s: %u certificate(s) and %u private key(s) checked; "
		    "nothing imported (dry run)\n", path, res.certs_new,
		    res.keys_new);
		sg_smime_import_clear(&res);
		return 0;
	}
	for (size_t i = 0; res.fprs != NULL && res.fprs[i] != NULL; i++)
		sg_smime_list(ks, res.fprs[i], print_smime,
		    res.changed[i] ? "imported  " : "unchanged ", &err);
	sg_tprintf(stdout, "%s: %u certificate(s) imported, %u unchanged; %u trust anchor(s) "
	    "imported, %u unchanged; %u private key(s) imported, %u unchanged\n",
	    path, res.certs_new, res.certs_unchanged, res.anchors_new,
	    res.anchors_unchanged, res.keys_new, res.keys_unchanged);
	sg_smime_import_clear(&res);
	return 0;
}

static int
import_file(const struct sg_keystore *ks, const char *path,
	    const struct import_opts *o)
{
	GError *gerr = NULL;
	gchar *data = NULL;
	gsize len = 0;
	int rc;

	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		sg_tprintf(stderr, "sealgate: %s: %s\n", path, gerr->message);
		g_error_free(gerr);
		return -1;
	}
	if (is_openpgp(data, len)) {
		rc = import_openpgp(ks, path, data, len, o);
	} else if (sg_smime_looks_like(data, len)) {
		rc = import_smime(ks, path, data, len, o);
	} else {
		sg_tprintf(stderr, "sealgate: %s: not an OpenPGP key, certificate, "
		    "PKCS#12 file or private key\n", path);
		rc = -1;
	}
	g_free(data);
	return rc;
}

static int
cmd_import(const struct sg_keystore *ks, int n, char **files,
	   const struct import_opts *o)
{
	int failed = 0;

	if (n == 0) {
		fprintf(stderr, "usage: sealgate keys import FILE... "
		    "[--passphrase-file F] [--trust-anchor]\n");
		return SG_EXIT_USAGE;
	}
	for (int i = 0; i < n; i++)
		if (import_file(ks, files[i], o) < 0)
			failed = 1;
	return failed ? SG_EXIT_USAGE : 0;
}

/* deactivate / reactivate ADDR (in canonical form, as the pipeline
 * compares it). */
static int
cmd_activation(const struct sg_keystore *ks, bool deactivate, int n,
	       char **addrs)
{
	struct sg_err err = { 0 };
	char *addr = NULL;
	bool changed;
	int code = SG_EXIT_USAGE;

	if (n != 1 || sg_addr_canon(addrs[0], &addr, &err) < 0 ||
	    !sg_addr_valid(addr)) {
		fprintf(stderr, "usage: sealgate keys %s ADDR\n",
		    deactivate ? "deactivate" : "reactivate");
		goto out;
	}
	if (sg_keystore_set_deactivated(ks, addr, deactivate, &changed,
	    &err) < 0) {
		sg_tprintf(stderr, "sealgate: %s\n", err.msg);
		goto out;
	}
	sg_tprintf(stdout, "%s: %s%s\n", addr, changed ? "" : "already ",
	    deactivate ? "deactivated: its keys are kept but no longer used "
	    "to sign or decrypt" : "active");
	code = 0;
out:
	g_free(addr);
	return code;
}

static void
print_rows(GPtrArray *rows, bool json)
{
	GString *out = g_string_new("[");
	char expires[32];

	for (guint i = 0; i < rows->len; i++) {
		struct row *r = g_ptr_array_index(rows, i);

		if (!json) {
			print_row(NULL, r);
			continue;
		}
		format_date(r->expires, expires, sizeof(expires));
		g_string_append(out, i ? ",{\"address\":" : "{\"address\":");
		sg_json_string(out, r->addr);
		g_string_append(out, ",\"method\":");
		sg_json_string(out, r->method);
		g_string_append(out, ",\"fingerprint\":");
		sg_json_string(out, r->fpr);
		g_string_append(out, ",\"state\":");
		sg_json_string(out, r->state);
		g_string_append(out, ",\"expires\":");
		sg_json_string(out, r->expires == 0 ? NULL : expires);
		g_string_append(out, ",\"usable\":");
		sg_json_string(out, r->usable);
		g_string_append_c(out, '}');
	}
	if (json)
		printf("%s]\n", out->str);
	g_string_free(out, TRUE);
}

/* list [--expiring DAYS] [--json]. With --expiring, only what expires
 * within DAYS (and is not expired or revoked yet) is listed, and the exit
 * code is 1 when there is such a thing: for cron and monitoring. */
static int
cmd_list(const struct sg_keystore *ks, const struct list_opts *o)
{
	GPtrArray *rows = g_ptr_array_new_with_free_func(row_free);
	struct sg_err err = { 0 };
	time_t limit = time(NULL) + (time_t)o->expiring_days * 86400;
	int rc = 0;

	if (sg_openpgp_list(ks, NULL, row_openpgp, rows, &err) < 0 ||
	    sg_smime_list(ks, NULL, row_smime, rows, &err) < 0) {
		sg_tprintf(stderr, "sealgate: %s\n", err.msg);
		g_ptr_array_free(rows, TRUE);
		return SG_EXIT_USAGE;
	}
	if (o->expiring_days >= 0) {
		for (guint i = rows->len; i > 0; i--) {
			struct row *r = g_ptr_array_index(rows, i - 1);

			if (r->expires == 0 || r->expires > limit ||
			    strcmp(r->state, "active") != 0)
				g_ptr_array_remove_index(rows, i - 1);
		}
		rc = rows->len > 0 ? 1 : 0;
	}
	print_rows(rows, o->json);
	g_ptr_array_free(rows, TRUE);
	return rc;
}

static int
write_stdout(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	return fwrite(buf, 1, len, stdout) == len ? SG_OK : SG_EIO;
}

/* export ADDR|FPR [--secret]: public material unless asked. */
static int
cmd_export(const struct sg_keystore *ks, int n, char **what, bool secret)
{
	struct sg_writer out = { write_stdout, NULL };
	struct sg_err err = { 0 };
	unsigned pgp = 0, smime = 0;

	if (n != 1) {
		fprintf(stderr, "usage: sealgate keys export ADDR|FINGERPRINT "
		    "[--secret]\n");
		return SG_EXIT_USAGE;
	}
	if (sg_openpgp_export(ks, what[0], secret, &out, &pgp, &err) < 0 ||
	    sg_smime_export(ks, what[0], secret, &out, &smime, &err) < 0) {
		sg_tprintf(stderr, "sealgate: %s\n", err.msg);
		return SG_EXIT_USAGE;
	}
	if (pgp + smime == 0) {
		sg_tprintf(stderr, "sealgate: nothing in the keystore for %s\n",
		    what[0]);
		return SG_EXIT_USAGE;
	}
	return 0;
}

/* remove ADDR|FPR: every key and certificate it names. */
static int
cmd_remove(const struct sg_keystore *ks, int n, char **what)
{
	struct sg_err err = { 0 };
	unsigned pgp = 0, smime = 0;

	if (n != 1) {
		fprintf(stderr, "usage: sealgate keys remove ADDR|FINGERPRINT\n");
		return SG_EXIT_USAGE;
	}
	if (sg_openpgp_remove(ks, what[0], &pgp, &err) < 0 ||
	    sg_smime_remove(ks, what[0], &smime, &err) < 0) {
		sg_tprintf(stderr, "sealgate: %s\n", err.msg);
		return SG_EXIT_USAGE;
	}
	if (pgp + smime == 0) {
		sg_tprintf(stderr, "sealgate: nothing in the keystore for %s\n",
		    what[0]);
		return SG_EXIT_USAGE;
	}
	sg_tprintf(stdout, "%s: %u OpenPGP key(s) and %u certificate(s) removed\n", what[0],
	    pgp, smime);
	return 0;
}

/* The first line of a passphrase file. (transfer full) */
static char *
read_passphrase(const char *path)
{
	GError *gerr = NULL;
	char *data = NULL, *nl;

	if (!g_file_get_contents(path, &data, NULL, &gerr)) {
		sg_tprintf(stderr, "sealgate: %s: %s\n", path, gerr->message);
		g_error_free(gerr);
		return NULL;
	}
	nl = strpbrk(data, "\r\n");
	if (nl != NULL)
		*nl = '\0';
	return data;
}

static int
parse_options(int argc, char **argv, const char **config,
	      struct import_opts *o, struct list_opts *l)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ "trust-anchor", no_argument, NULL, 't' },
		{ "expiring", required_argument, NULL, 'e' },
		{ "json", no_argument, NULL, 'j' },
		{ "secret", no_argument, NULL, 's' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			*config = optarg;
			break;
		case 'p':
			g_free(o->passphrase);
			o->passphrase = read_passphrase(optarg);
			if (o->passphrase == NULL)
				return -1;
			break;
		case 't':
			o->smime_flags |= SG_SMIME_TRUST_ANCHOR;
			break;
		case 'e':
			l->expiring_days = (int)strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || l->expiring_days < 0 ||
			    l->expiring_days > 36500) {
				fprintf(stderr, "sealgate: --expiring needs a number "
				    "of days\n");
				return -1;
			}
			break;
		case 'j':
			l->json = true;
			break;
		case 's':
			l->secret = true;
			break;
		case 'n':
			o->dry_run = true;
			o->smime_flags |= SG_SMIME_DRY_RUN;
			break;
		default:
			return -1;
		}
	}
	return optind;
}

int
sg_cmd_keys(int argc, char **argv)
{
	struct import_opts o = { 0 };
	struct list_opts l = { .expiring_days = -1 };
	const char *config = NULL, *sub;
	static const char *const verbs[] = { "import", "list", "deactivate",
		"reactivate", "export", "remove", NULL };
	bool known = false;
	int lock = -1;
	struct sg_policy *pol = NULL;
	struct sg_keystore *ks = NULL;
	int rc = SG_EXIT_USAGE;

	if (parse_options(argc, argv, &config, &o, &l) < 0)
		goto out;
	if (optind >= argc) {
		fprintf(stderr, "usage: sealgate keys [-c FILE] import FILE... "
		    "[--passphrase-file F] [--trust-anchor] [--dry-run] | "
		    "list [--expiring DAYS] "
		    "[--json] | export ADDR|FPR [--secret] | remove ADDR|FPR | "
		    "deactivate ADDR | reactivate ADDR\n");
		goto out;
	}
	sub = argv[optind++];
	for (const char *const *v = verbs; *v != NULL; v++)
		known |= strcmp(sub, *v) == 0;
	if (!known) {
		sg_tprintf(stderr, "sealgate keys: unknown command \"%s\"\n", sub);
		goto out;
	}
	pol = sg_load_policy_or_report(config);
	if (pol == NULL || (strcmp(sub, "export") == 0 && l.secret &&
	    !sg_secret_keys_user(pol, "keys export --secret")) ||
	    !sg_init_libraries())
		goto out;
	ks = sg_open_keystore_or_report(pol, strcmp(sub, "import") == 0
	    ? SG_KS_CREATE : 0);
	if (ks == NULL)
		goto out;
	/* Changes wait for each other; listing and export do not. */
	if (strcmp(sub, "list") != 0 && strcmp(sub, "export") != 0) {
		struct sg_err err = { 0 };

		lock = sg_keystore_lock(ks, &err);
		if (lock < 0) {
			sg_tprintf(stderr, "sealgate: %s\n", err.msg);
			goto out;
		}
	}
	listed = ks;
	o.internal.is_internal = internal_addr;
	o.internal.arg = pol;
	if (strcmp(sub, "import") == 0)
		rc = cmd_import(ks, argc - optind, argv + optind, &o);
	else if (strcmp(sub, "list") == 0)
		rc = cmd_list(ks, &l);
	else if (strcmp(sub, "export") == 0)
		rc = cmd_export(ks, argc - optind, argv + optind, l.secret);
	else if (strcmp(sub, "remove") == 0)
		rc = cmd_remove(ks, argc - optind, argv + optind);
	else
		rc = cmd_activation(ks, strcmp(sub, "deactivate") == 0,
		    argc - optind, argv + optind);
	listed = NULL;
out:
	if (lock >= 0)
		close(lock);
	if (o.passphrase != NULL)
		memset(o.passphrase, 0, strlen(o.passphrase));
	g_free(o.passphrase);
	sg_keystore_free(ks);
	sg_policy_unref(pol);
	return rc;
}
