/* OpenPGP keyring changes on a copy of the GnuPG home (see
 * sg_keystore_stage_begin): the copy's gpg-agent must be gone before the
 * copy takes the real home's place. */
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
