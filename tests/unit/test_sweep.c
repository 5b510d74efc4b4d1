/* The sweep of throwaway GnuPG homes (sg_openpgp_sweep_homes): only the
 * homes of processes that no longer run, only real directories of our
 * user, only names of sealgate's own form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "sealgate/openpgp.h"

static char *tmp;       /* TMPDIR of this test */

/* A pid that no process has (a child that has exited and was reaped). */
static long
dead_pid(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return (long)pid;
}

/* tmp/NAME as a directory holding a file; returns its path. */
static char *
home(const char *name)
{
	char *path = g_build_filename(tmp, name, NULL);
	char *file = g_build_filename(path, "secret.key", NULL);

	assert_int_equal(mkdir(path, 0700), 0);
	assert_true(g_file_set_contents(file, "x", 1, NULL));
	g_free(file);
	return path;
}

static bool
exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static void
test_only_homes_of_dead_processes(void **state)
{
	long dead = dead_pid();
	char *name;
	char *gone[3], *kept[6], *target, *link;

	(void)state;
	name = g_strdup_printf("sgk.%ld.Ab3xYz", dead);
	gone[0] = home(name);
	g_free(name);
	name = g_strdup_printf("sgi.%ld.Qw8eRt", dead);
	gone[1] = home(name);
	g_free(name);
	/* This process makes none before its sweep: such a home is stale. */
	name = g_strdup_printf("sgk.%ld.Zz0zZz", (long)getpid());
	gone[2] = home(name);
	g_free(name);

	name = g_strdup_printf("sgk.%ld.Ab3xYz", (long)getppid()); /* runs */
	kept[0] = home(name);
	g_free(name);
	name = g_strdup_printf("sgk.%ld.short", dead);
	kept[1] = home(name);
	g_free(name);
	kept[2] = home("sgk.x12.Ab3xYz");
	kept[3] = home("other.1.Ab3xYz");
	name = g_strdup_printf("sgx.%ld.Ab3xYz", dead);
	kept[4] = home(name);
	g_free(name);
	/* A link in TMPDIR is never followed. */
	target = home("target");
	name = g_strdup_printf("sgk.%ld.Lnk0Lk", dead);
	link = g_build_filename(tmp, name, NULL);
	g_free(name);
	assert_int_equal(symlink(target, link), 0);
	kept[5] = link;

	assert_int_equal(sg_openpgp_sweep_homes(), 3);
	for (size_t i = 0; i < G_N_ELEMENTS(gone); i++) {
		if (exists(gone[i]))
			fail_msg("%s not removed", gone[i]);
		g_free(gone[i]);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(kept); i++) {
		if (!exists(kept[i]))
			fail_msg("%s removed", kept[i]);
		g_free(kept[i]);
	}
	name = g_build_filename(target, "secret.key", NULL);
	assert_true(exists(name));
	g_free(name);
	g_free(target);
	assert_int_equal(sg_openpgp_sweep_homes(), 0);
}

static void
test_not_another_users_home(void **state)
{
	char *name, *path;

	(void)state;
	if (geteuid() != 0)
		skip();   /* only root makes a directory for another user */
	name = g_strdup_printf("sgk.%ld.Oth3rU", dead_pid());
	path = home(name);
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_int_equal(sg_openpgp_sweep_homes(), 0);
	assert_true(exists(path));
	g_free(name);
	g_free(path);
}

static int
remove_tmp(void **state)
{
	char *argv[] = { "rm", "-rf", tmp, NULL };

	(void)state;
	g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL,
	    NULL, NULL, NULL);
	g_free(tmp);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_homes_of_dead_processes),
		cmocka_unit_test(test_not_another_users_home),
	};

	/* Before anything asks GLib for the temporary directory (it keeps
	 * the first answer). */
	tmp = g_strdup("/tmp/sgsweep.XXXXXX");
	if (mkdtemp(tmp) == NULL || setenv("TMPDIR", tmp, 1) != 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, remove_tmp);
}
