/* OpenPGP keyring changes on a copy of the GnuPG home (see
 * sg_keystore_stage_begin): the copy's gpg-agent must be gone before the
 * copy takes the real home's place. Throwaway GnuPG homes, and those that
 * a process which died left behind. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "openpgp_int.h"

static void
kill_agent(const char *home)
{
	char *argv[] = { "gpgconf", "--homedir", (char *)home, "--kill", "all",
		NULL };

	g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH |
	    G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
	    NULL, NULL, NULL, NULL);
}

void
sg_pgp_remove_home(const char *home)
{
	kill_agent(home);
	sg_keystore_remove_tree(home);
}

char *
sg_pgp_make_home(const char *prefix, struct sg_err *err)
{
	char *tmpl = g_strdup_printf("%s.%ld.XXXXXX", prefix, (long)getpid());
	GError *gerr = NULL;
	char *home = g_dir_make_tmp(tmpl, &gerr);

	if (home == NULL) {
		sg_err_set(err, SG_EIO, "cannot create a GnuPG home: %s",
		    gerr->message);
		g_error_free(gerr);
	}
	g_free(tmpl);
	return home;
}

/* The pid in the name of a throwaway home (PREFIX.PID.XXXXXX), or 0. */
static long
home_pid(const char *name)
{
	static const char *const prefixes[] = { SG_PGP_HOME_DECRYPT ".",
		SG_PGP_HOME_CHECK ".", NULL };
	char *end;
	long pid;

	for (int i = 0; prefixes[i] != NULL; i++) {
		if (!g_str_has_prefix(name, prefixes[i]))
			continue;
		name += strlen(prefixes[i]);
		if (!g_ascii_isdigit(*name))
			return 0;
		errno = 0;
		pid = strtol(name, &end, 10);
		return errno == 0 && pid > 0 && pid <= INT_MAX && *end == '.' &&
		    strlen(end + 1) == 6 ? pid : 0;
	}
	return 0;
}

/* Whether the process that made a home is gone: none runs with its pid,
 * or it is this one, which makes none before its sweep. */
static bool
maker_gone(long pid)
{
	if (pid == (long)getpid())
		return true;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

unsigned
sg_openpgp_sweep_homes(void)
{
	const char *tmp = g_get_tmp_dir();
	GDir *d = g_dir_open(tmp, 0, NULL);
	const char *name;
	unsigned n = 0;

	while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
		long pid = home_pid(name);
		char *path;
		struct stat st;

		if (pid == 0 || !maker_gone(pid))
			continue;
		path = g_build_filename(tmp, name, NULL);
		/* A directory of our user's, not a link someone put there. */
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
		    st.st_uid == geteuid()) {
			sg_pgp_remove_home(path);
			n++;
		}
		g_free(path);
	}
	if (d != NULL)
		g_dir_close(d);
	return n;
}

void
sg_pgp_stage_abort(char *home)
{
	kill_agent(home);
	sg_keystore_stage_abort(home);
}

/* Removes the sockets the copy's agent (and any other GnuPG daemon) made
 * in it. `gpgconf --kill` returns before the agent has exited and removed
 * them; a socket moved into the real home with the copy would reach an
 * agent that is exiting, or none. */
static void
remove_sockets(const char *home)
{
	GDir *d = g_dir_open(home, 0, NULL);
	const char *name;
	struct stat st;

	while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
		char *path = g_build_filename(home, name, NULL);

		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
		g_free(path);
	}
	if (d != NULL)
		g_dir_close(d);
}

int
sg_pgp_stage_commit(const struct sg_keystore *ks, char *home,
		    struct sg_err *err)
{
	/* The copy's agent would otherwise answer on the real home's socket
	 * while reading keys from the copy's path. The previous home's agent,
	 * if any, serves the real home's path and reads keys from there: it
	 * finishes what it is doing and stops by itself once its socket is
	 * gone. */
	kill_agent(home);
	remove_sockets(home);
	return sg_keystore_stage_commit(ks->gnupg_home, home, err);
}
