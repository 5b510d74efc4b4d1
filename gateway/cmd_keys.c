/* `sealgate keys import|list`: the administrator's view of the keystore. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "sealgate/openpgp.h"
#include "sealgate.h"

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

static void
print_identity(const struct sg_openpgp_identity *id, void *arg)
{
	const char *prefix = arg;
	char expires[32];

	format_date(id->expires, expires, sizeof(expires));
	printf("%s%-32s openpgp %s %-8s expires=%s usable=%s%s\n",
	    prefix != NULL ? prefix : "", id->addr, id->fpr, id->state, expires,
	    id->can_encrypt ? "encrypt" : "-",
	    id->secret ? ",decrypt,sign" : "");
}

static int
import_file(const struct sg_keystore *ks, const char *path)
{
	struct sg_openpgp_import res = { 0 };
	struct sg_err err = { 0 };
	GError *gerr = NULL;
	gchar *data = NULL;
	gsize len = 0;
	int rc;

	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		fprintf(stderr, "sealgate: %s: %s\n", path, gerr->message);
		g_error_free(gerr);
		return -1;
	}
	rc = sg_openpgp_import(ks, data, len, &res, &err);
	g_free(data);
	if (rc < 0) {
		fprintf(stderr, "sealgate: %s: %s\n", path, err.msg);
		sg_openpgp_import_clear(&res);
		return -1;
	}
	for (size_t i = 0; res.fprs != NULL && res.fprs[i] != NULL; i++) {
		if (sg_openpgp_list(ks, res.fprs[i], print_identity,
		    res.changed[i] ? "imported  " : "unchanged ", &err) < 0)
			fprintf(stderr, "sealgate: %s: %s\n", path, err.msg);
	}
	printf("%s: %u key(s) read, %u imported, %u unchanged%s\n", path,
	    res.considered, res.imported, res.unchanged,
	    res.secret_imported ? ", secret keys imported" : "");
	sg_openpgp_import_clear(&res);
	return 0;
}

static int
cmd_import(const struct sg_keystore *ks, int n, char **files)
{
	int failed = 0;

	if (n == 0) {
		fprintf(stderr, "usage: sealgate keys import FILE...\n");
		return SG_EXIT_USAGE;
	}
	for (int i = 0; i < n; i++)
		if (import_file(ks, files[i]) < 0)
			failed = 1;
	return failed ? SG_EXIT_USAGE : 0;
}

static int
cmd_list(const struct sg_keystore *ks)
{
	struct sg_err err = { 0 };

	if (sg_openpgp_list(ks, NULL, print_identity, NULL, &err) < 0) {
		fprintf(stderr, "sealgate: %s\n", err.msg);
		return SG_EXIT_USAGE;
	}
	return 0;
}

int
sg_cmd_keys(int argc, char **argv)
{
	const char *config = NULL, *sub;
	struct sg_policy *pol = NULL;
	struct sg_keystore *ks = NULL;
	int rc = SG_EXIT_USAGE;

	if (sg_parse_config_option(argc, argv, &config) < 0)
		return SG_EXIT_USAGE;
	if (optind >= argc) {
		fprintf(stderr, "usage: sealgate keys [-c FILE] import FILE... | "
		    "list\n");
		return SG_EXIT_USAGE;
	}
	sub = argv[optind++];
	if (strcmp(sub, "import") != 0 && strcmp(sub, "list") != 0) {
		fprintf(stderr, "sealgate keys: unknown command \"%s\"\n", sub);
		return SG_EXIT_USAGE;
	}
	pol = sg_load_policy_or_report(config);
	if (pol == NULL || !sg_init_libraries())
		goto out;
	ks = sg_open_keystore_or_report(pol, strcmp(sub, "import") == 0
	    ? SG_KS_CREATE : 0);
	if (ks == NULL)
		goto out;
	if (strcmp(sub, "import") == 0)
		rc = cmd_import(ks, argc - optind, argv + optind);
	else
		rc = cmd_list(ks);
out:
	sg_keystore_free(ks);
	sg_policy_unref(pol);
	return rc;
}
