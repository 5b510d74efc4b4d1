/* Fuzz target: arbitrary bytes as the policy file (sg_policy_load, the
 * loader behind `sealgate policy check` and the milter's start and
 * reload). A sender_logins file "logins" lies next to it. Checks that a
 * refused file always says why, and that a loaded one is complete. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib.h>

#include "fuzz_env.h"

static char *dir, *path;

static void
cleanup(void)
{
	char *logins = g_build_filename(dir, "logins", NULL);

	unlink(path);
	unlink(logins);
	rmdir(dir);
	g_free(logins);
	g_free(path);
	g_free(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	GError *gerr = NULL;
	char *logins;

	(void)argc;
	(void)argv;
	fuzz_init_libraries();
	dir = g_dir_make_tmp("sgfuzz.XXXXXX", &gerr);
	if (dir == NULL)
		fuzz_fail("%s", gerr->message);
	path = g_build_filename(dir, "policy.yaml", NULL);
	logins = g_build_filename(dir, "logins", NULL);
	if (!g_file_set_contents(logins, "alice@example.com alice, assistant\n"
	    "@example.com admin\n", -1, NULL))
		fuzz_fail("cannot write %s", logins);
	g_free(logins);
	fuzz_on_exit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	GPtrArray *errors;
	struct sg_policy *pol = NULL;
	int rc;
	FILE *fp = fopen(path, "wb");

	/* Not g_file_set_contents: it syncs the file to disk every time. */
	if (fp == NULL || (size > 0 && fwrite(data, 1, size, fp) != size) ||
	    fclose(fp) != 0)
		fuzz_fail("cannot write %s", path);
	errors = g_ptr_array_new_with_free_func(g_free);
	rc = sg_policy_load(path, errors, &pol);
	if (rc < 0 && (errors->len == 0 || pol != NULL))
		fuzz_fail("refused (%s) without saying why", sg_strerror(rc));
	if (rc == 0 && (pol == NULL || errors->len != 0 ||
	    pol->gateway.keystore == NULL))
		fuzz_fail("loaded, but incomplete or with errors");
	sg_policy_unref(pol);
	g_ptr_array_free(errors, TRUE);
	return 0;
}
