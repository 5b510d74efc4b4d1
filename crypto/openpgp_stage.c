/*
 * Atomic changes to the OpenPGP keyring.
 *
 * gpg writes its keyring key by key and the agent writes secret keys file
 * by file, so an import killed half-way would leave part of a keyring
 * behind. Every change is therefore made on a copy of the GnuPG home in
 * the keystore directory, which then trades places with the real home in
 * one step (renameat2 with RENAME_EXCHANGE). Until that step the real
 * home is untouched; after it the change is complete. A copy left by a
 * killed change is removed by the next one.
 */
#define _GNU_SOURCE /* renameat2, syncfs */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "openpgp_int.h"

#define STAGE_PREFIX "openpgp.new."

/* Sockets, lock files and half-written files stay behind. */
static bool
worth_copying(const char *name, const struct stat *st)
{
	if (S_ISDIR(st->st_mode))
		return true;
	return S_ISREG(st->st_mode) && !g_str_has_suffix(name, ".lock") &&
	    !g_str_has_prefix(name, ".#lk") && !g_str_has_suffix(name, ".tmp");
}

static int
copy_file(const char *from, const char *to, mode_t mode, struct sg_err *err)
{
	char buf[65536];
	ssize_t n = 0;
	int in, out, rc = SG_OK;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return sg_err_set(err, SG_EKEYSTORE, "cannot read %s: %s", from,
		    strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0700);
	if (out < 0) {
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot create %s: %s", to,
		    strerror(errno));
		goto out;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		for (ssize_t off = 0, w; off < n; off += w) {
			w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				n = -1;
				goto done;
			}
		}
done:
	if (n < 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot copy %s: %s", from,
		    strerror(errno));
	close(out);
out:
	close(in);
	return rc;
}

/* Copies the contents of directory from into the existing directory to. */
static int
copy_tree(const char *from, const char *to, struct sg_err *err)
{
	GDir *d = g_dir_open(from, 0, NULL);
	const char *name;
	struct stat st;
	int rc = SG_OK;

	if (d == NULL)
		return sg_err_set(err, SG_EKEYSTORE, "cannot read %s", from);
	while (rc == 0 && (name = g_dir_read_name(d)) != NULL) {
		char *src = g_build_filename(from, name, NULL);
		char *dst = g_build_filename(to, name, NULL);

		if (lstat(src, &st) < 0 || !worth_copying(name, &st))
			;
		else if (!S_ISDIR(st.st_mode))
			rc = copy_file(src, dst, st.st_mode, err);
		else if (mkdir(dst, 0700) < 0)
			rc = sg_err_set(err, SG_EKEYSTORE, "cannot create %s: %s",
			    dst, strerror(errno));
		else
			rc = copy_tree(src, dst, err);
		g_free(src);
		g_free(dst);
	}
	g_dir_close(d);
	return rc;
}

static void
spawn_quietly(char **argv)
{
	g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH |
	    G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL,
	    NULL, NULL, NULL, NULL);
}

static void
kill_agent(const char *home)
{
	char *argv[] = { "gpgconf", "--homedir", (char *)home, "--kill", "all",
		NULL };

	spawn_quietly(argv);
}

static void
remove_tree(const char *path)
{
	char *argv[] = { "rm", "-rf", "--", (char *)path, NULL };

	spawn_quietly(argv);
}

void
sg_pgp_remove_home(const char *home)
{
	kill_agent(home);
	remove_tree(home);
}

/* Removes copies left by changes that were killed. The caller holds the
 * keystore lock, so no other change is using one. */
static void
remove_leftovers(const struct sg_keystore *ks)
{
	GDir *d = g_dir_open(ks->dir, 0, NULL);
	const char *name;

	while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
		if (g_str_has_prefix(name, STAGE_PREFIX)) {
			char *path = g_build_filename(ks->dir, name, NULL);

			sg_pgp_remove_home(path);
			g_free(path);
		}
	}
	if (d != NULL)
		g_dir_close(d);
}

int
sg_pgp_stage_begin(const struct sg_keystore *ks, char **home,
		   struct sg_err *err)
{
	char *path;
	int rc;

	remove_leftovers(ks);
	/* Beside the real home: the exchange needs the same file system. */
	path = g_build_filename(ks->dir, STAGE_PREFIX "XXXXXX", NULL);
	if (g_mkdtemp_full(path, 0700) == NULL) {
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot create %s: %s", path,
		    strerror(errno));
		g_free(path);
		return rc;
	}
	rc = copy_tree(ks->gnupg_home, path, err);
	if (rc < 0) {
		sg_pgp_stage_abort(path);
		return rc;
	}
	*home = path;
	return SG_OK;
}

void
sg_pgp_stage_abort(char *home)
{
	sg_pgp_remove_home(home);
	g_free(home);
}

int
sg_pgp_stage_commit(const struct sg_keystore *ks, char *home,
		    struct sg_err *err)
{
	int fd, rc = SG_OK;

	/* The copy's agent would otherwise answer on the real home's socket
	 * while reading keys from the copy's path. */
	kill_agent(home);
	/* On disk before it counts, so a crash cannot commit a torn copy. */
	fd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || syncfs(fd) < 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot write %s: %s", home,
		    strerror(errno));
	if (fd >= 0)
		close(fd);
	if (rc == 0 && renameat2(AT_FDCWD, home, AT_FDCWD, ks->gnupg_home,
	    RENAME_EXCHANGE) < 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot replace %s atomically: "
		    "%s", ks->gnupg_home, strerror(errno));
	if (rc < 0) {
		sg_pgp_stage_abort(home);
		return rc;
	}
	/* home now holds the previous keyring. Its agent, if any, serves the
	 * real home's path and reads keys from there: it is left to finish
	 * what it is doing and stops by itself once its socket is gone. */
	remove_tree(home);
	g_free(home);
	return SG_OK;
}
