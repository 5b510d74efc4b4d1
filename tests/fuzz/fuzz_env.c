/* What the fuzz targets run in; see fuzz_env.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "openpgp_int.h"
#include "sealgate/addr.h"
#include "sealgate/openpgp.h"
#include "sealgate/smime.h"
#include "fuzz_env.h"

#ifndef FUZZ_SRC_DIR
#error "FUZZ_SRC_DIR must name the source tree"
#endif

static struct fuzz_env env;
static FILE *devnull;
static void (*exit_fns[4])(void);
static unsigned n_exit_fns;

void
fuzz_cleanup(void)
{
	while (n_exit_fns > 0)
		exit_fns[--n_exit_fns]();
}

void
fuzz_on_exit(void (*fn)(void))
{
	if (n_exit_fns == G_N_ELEMENTS(exit_fns))
		fuzz_fail("too many clean-up functions");
	if (n_exit_fns == 0)
		atexit(fuzz_cleanup);
	exit_fns[n_exit_fns++] = fn;
}

void
fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fuzz_cleanup();
	abort();
}

static GBytes *
source_file(const char *dir, const char *name)
{
	char *path = g_build_filename(FUZZ_SRC_DIR, dir, name, NULL);
	GError *gerr = NULL;
	gchar *data;
	gsize len;

	if (!g_file_get_contents(path, &data, &len, &gerr))
		fuzz_fail("%s", gerr->message);
	g_free(path);
	return g_bytes_new_take(data, len);
}

static GBytes *
example_file(const char *name)
{
	return source_file("keys-example", name);
}

static void
import_openpgp(const struct sg_keystore *ks, const char *name)
{
	GBytes *b = example_file(name);
	struct sg_openpgp_import res = { 0 };
	struct sg_err err = { 0 };

	/* The example keys are all current: nothing need be internal. */
	if (sg_openpgp_import(ks, g_bytes_get_data(b, NULL), g_bytes_get_size(b),
	    NULL, &res, &err) < 0)
		fuzz_fail("importing %s: %s", name, err.msg);
	sg_openpgp_import_clear(&res);
	g_bytes_unref(b);
}

static void
import_smime(const struct sg_keystore *ks, const char *name, int flags)
{
	GBytes *b = example_file(name);
	struct sg_smime_import res = { 0 };
	struct sg_err err = { 0 };

	if (sg_smime_import(ks, g_bytes_get_data(b, NULL), g_bytes_get_size(b),
	    "", flags, NULL, &res, &err) < 0)
		fuzz_fail("importing %s: %s", name, err.msg);
	sg_smime_import_clear(&res);
	g_bytes_unref(b);
}

static void
cleanup(void)
{
	char *home = env.ks != NULL ? g_strdup(env.ks->gnupg_home) : NULL;

	sg_policy_unref(env.pol);
	sg_keystore_free(env.ks);
	/* The keystore's gpg-agent first, then the files. */
	if (home != NULL)
		sg_pgp_remove_home(home);
	g_free(home);
	if (env.dir != NULL)
		sg_keystore_remove_tree(env.dir);
	g_free(env.dir);
	if (devnull != NULL)
		fclose(devnull);
	memset(&env, 0, sizeof(env));
}

static void
make_keystore(const char *dir)
{
	struct sg_keystore *ks = NULL;
	struct sg_err err = { 0 };

	if (sg_keystore_open(dir, SG_KS_CREATE, &err, &ks) < 0)
		fuzz_fail("keystore %s: %s", dir, err.msg);
	import_openpgp(ks, "openpgp/alice.sec.asc");
	import_openpgp(ks, "openpgp/carol.pub.asc");
	import_smime(ks, "smime/alice.p12", 0);
	import_smime(ks, "smime/frank.pem", 0);
	import_smime(ks, "smime/ca.pem", SG_SMIME_TRUST_ANCHOR);
	sg_keystore_free(ks);
	if (sg_keystore_snapshot(dir, sg_addr_key, &err, &env.ks) < 0)
		fuzz_fail("keystore snapshot: %s", err.msg);
}

static void
load_policy(void)
{
	GBytes *yaml = source_file("tests/fuzz", "policy.yaml");
	char *path = g_build_filename(env.dir, "policy.yaml", NULL);
	GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);

	if (!g_file_set_contents(path, g_bytes_get_data(yaml, NULL),
	    (gssize)g_bytes_get_size(yaml), NULL))
		fuzz_fail("cannot write %s", path);
	if (sg_policy_load(path, errors, &env.pol) < 0)
		fuzz_fail("policy: %s", errors->len > 0 ?
		    (char *)g_ptr_array_index(errors, 0) : "no error reported");
	if (g_mkdir_with_parents(env.pol->gateway.spool_dir, 0700) < 0)
		fuzz_fail("spool %s: %s", env.pol->gateway.spool_dir,
		    strerror(errno));
	g_ptr_array_free(errors, TRUE);
	g_free(path);
	g_bytes_unref(yaml);
}

/* A GLib critical is a function called with what it refuses (NULL,
 * say): a fault in sealgate, whatever the function then returned. */
static void
log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message,
	    gpointer data)
{
	if (level & (G_LOG_FLAG_FATAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
		fuzz_fail("%s: %s", domain != NULL ? domain : "GLib", message);
	g_log_default_handler(domain, level, message, data);
}

void
fuzz_init_libraries(void)
{
	static bool done;
	struct sg_err err = { 0 };

	if (done)
		return;
	g_log_set_default_handler(log_handler, NULL);
	g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
	if (sg_pipeline_init(&err) < 0)
		fuzz_fail("%s", err.msg);
	done = true;
}

const struct fuzz_env *
fuzz_env(void)
{
	GError *gerr = NULL;
	char *keys;

	if (env.dir != NULL)
		return &env;
	fuzz_init_libraries();
	env.dir = g_dir_make_tmp("sgfuzz.XXXXXX", &gerr);
	if (env.dir == NULL)
		fuzz_fail("%s", gerr->message);
	fuzz_on_exit(cleanup);
	keys = g_build_filename(env.dir, "keys", NULL);
	make_keystore(keys);
	g_free(keys);
	load_policy();
	devnull = fopen("/dev/null", "w");
	if (devnull == NULL)
		fuzz_fail("/dev/null: %s", strerror(errno));
	return &env;
}

void
fuzz_run_message(const uint8_t *data, size_t size,
		 const struct sg_envelope *envelope, struct sg_result *res)
{
	const struct fuzz_env *e = fuzz_env();
	const char *spool_dir = e->pol->gateway.spool_dir;
	struct sg_spool *raw = NULL;
	struct sg_input *in;
	struct sg_msg *msg = NULL;
	int rc;

	rc = sg_spool_new(spool_dir, SG_SPOOL_MEM_LIMIT, &raw);
	if (rc == 0)
		rc = sg_spool_write(raw, data, size);
	if (rc < 0)
		fuzz_fail("spool: %s", sg_strerror(rc));
	in = sg_input_new(raw);
	rc = sg_input_to_msg(in, spool_dir, envelope, &msg);
	if (rc < 0)
		fuzz_fail("message: %s", sg_strerror(rc));
	sg_result_init(res);
	sg_pipeline_run(msg, e->pol, e->ks, NULL, res);
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "fuzz: %s %s%s%s action=%s reason=%s\n",
		    sg_verdict_name(res->verdict), res->rcode,
		    res->text ? " " : "", res->text ? res->text : "",
		    res->action, res->reason ? res->reason : "");
	/* What `sealgate process` writes; a header edit no MTA could apply
	 * is a fault of the pipeline. */
	if (res->verdict == SG_VERDICT_ACCEPT ||
	    res->verdict == SG_VERDICT_QUARANTINE) {
		rc = sg_input_write_to(in, &res->edits, devnull);
		if (rc < 0)
			fuzz_fail("writing the result: %s", sg_strerror(rc));
	}
	sg_msg_free(msg);
	sg_input_free(in);
}
