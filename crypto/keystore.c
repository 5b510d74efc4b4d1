/* Keystore directory handling; see include/sealgate/keystore.h. */
#define _GNU_SOURCE /* renameat2, syncfs */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "keystore_int.h"

/* GnuPG options of the gateway's own home: never touch the network.
 * Trust comes from the administrator's import (encryption passes
 * always-trust); "trust-model always" is not set here because with it
 * gpg applies imported revocations but does not count them. Key listings
 * compute no validity ("no-expensive-trust-checks"): a user id is then
 * listed as revoked only when it is revoked itself, not because its key
 * is (a revoked key still decrypts for its user ids that are not). */
static const char gpg_conf[] =
	"# Written by sealgate. The gateway's keyring works offline:\n"
	"# keys arrive only through `sealgate keys import`.\n"
	"no-auto-key-retrieve\n"
	"no-auto-key-import\n"
	"auto-key-locate local\n"
	"disable-dirmngr\n"
	"no-expensive-trust-checks\n"
	"no-greeting\n";

bool
sg_internal_has(const struct sg_internal *in, const char *addr)
{
	return in != NULL && in->is_internal != NULL && addr != NULL &&
	    in->is_internal(addr, in->arg);
}

static const char *const smime_subdirs[] = { "certs", "keys", "anchors" };

char *
sg_keystore_smime_path(const struct sg_keystore *ks, const char *sub,
		       const char *name)
{
	return g_build_filename(ks->smime_dir, sub, name, NULL);
}

/* Checks that path is a directory only its owner can use. */
static int
check_private_dir(const char *path, struct sg_err *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return sg_err_set(err, SG_EKEYSTORE, "keystore %s: %s", path,
		    strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return sg_err_set(err, SG_EKEYSTORE,
		    "keystore %s is not a directory", path);
	if ((st.st_mode & 077) != 0)
		return sg_err_set(err, SG_EKEYSTORE,
		    "keystore %s can be used by other users (mode %04o); "
		    "fix it with: chmod 700 %s", path,
		    (unsigned)(st.st_mode & 07777), path);
	return SG_OK;
}

static int
make_private_dir(const char *path, struct sg_err *err)
{
	if (g_mkdir_with_parents(path, 0700) < 0)
		return sg_err_set(err, SG_EKEYSTORE, "cannot create %s: %s", path,
		    strerror(errno));
	return SG_OK;
}

/* Writes gpg.conf unless it already has our content. */
static int
write_gpg_conf(const char *home, struct sg_err *err)
{
	char *path = g_build_filename(home, "gpg.conf", NULL);
	char *cur = NULL;
	GError *gerr = NULL;
	int rc = SG_OK;

	if (g_file_get_contents(path, &cur, NULL, NULL) &&
	    strcmp(cur, gpg_conf) == 0)
		goto out;
	if (!g_file_set_contents(path, gpg_conf, -1, &gerr)) {
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot write %s: %s", path,
		    gerr->message);
		g_error_free(gerr);
		goto out;
	}
	chmod(path, 0600);
out:
	g_free(cur);
	g_free(path);
	return rc;
}

/* Refuses private key files that other users could read. */
static int
check_private_files(const char *dir, struct sg_err *err)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	struct stat st;
	int rc = SG_OK;

	while (rc == 0 && d != NULL && (name = g_dir_read_name(d)) != NULL) {
		char *path = g_build_filename(dir, name, NULL);

		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & 077) != 0)
			rc = sg_err_set(err, SG_EKEYSTORE, "private key file %s can be "
			    "read by other users (mode %04o); fix it with: chmod 600 %s",
			    path, (unsigned)(st.st_mode & 07777), path);
		g_free(path);
	}
	if (d != NULL)
		g_dir_close(d);
	return rc;
}

int
sg_keystore_open(const char *dir, int flags, struct sg_err *err,
		 struct sg_keystore **out)
{
	struct sg_keystore *ks;
	int rc;

	/* Before anything is created or written in it. */
	rc = sg_keystore_check_links(dir, err);
	if (rc < 0)
		return rc;
	if ((flags & SG_KS_CREATE) && access(dir, F_OK) < 0) {
		rc = make_private_dir(dir, err);
		if (rc < 0)
			return rc;
	}
	rc = check_private_dir(dir, err);
	if (rc < 0)
		return rc;

	ks = calloc(1, sizeof(*ks));
	if (ks == NULL)
		return sg_err_set(err, SG_ENOMEM, "out of memory");
	ks->refs = 1;
	ks->dir = g_strdup(dir);
	ks->gnupg_home = g_build_filename(dir, "openpgp", NULL);
	ks->smime_dir = g_build_filename(dir, "smime", NULL);

	/* An existing, private, empty keystore is initialised on first use. */
	if (access(ks->gnupg_home, F_OK) < 0) {
		rc = make_private_dir(ks->gnupg_home, err);
		if (rc < 0)
			goto fail;
	}
	rc = check_private_dir(ks->gnupg_home, err);
	if (rc == 0)
		rc = write_gpg_conf(ks->gnupg_home, err);
	for (size_t i = 0; rc == 0 && i < G_N_ELEMENTS(smime_subdirs); i++) {
		char *sub = g_build_filename(ks->smime_dir, smime_subdirs[i], NULL);

		if (access(sub, F_OK) < 0)
			rc = make_private_dir(sub, err);
		if (rc == 0 && strcmp(smime_subdirs[i], "keys") == 0)
			rc = check_private_files(sub, err);
		g_free(sub);
	}
	if (rc == 0) {
		char *pgp = g_build_filename(ks->gnupg_home, "private-keys-v1.d",
		    NULL);

		rc = check_private_files(pgp, err);
		g_free(pgp);
	}
	if (rc < 0)
		goto fail;
	*out = ks;
	return SG_OK;
fail:
	sg_keystore_free(ks);
	return rc;
}

struct sg_keystore *
sg_keystore_ref(struct sg_keystore *ks)
{
	g_atomic_int_inc(&ks->refs);
	return ks;
}

void
sg_keystore_free(struct sg_keystore *ks)
{
	if (ks == NULL || !g_atomic_int_dec_and_test(&ks->refs))
		return;
	sg_keyindex_free(ks->index);
	g_free(ks->dir);
	g_free(ks->gnupg_home);
	g_free(ks->smime_dir);
	free(ks);
}

/* The lines of the deactivated file; a file that is not there is empty,
 * one that cannot be read is an error: never "nobody deactivated". */
int
sg_keystore_read_deactivated(const struct sg_keystore *ks, char ***lines,
			     struct sg_err *err)
{
	char *path = g_build_filename(ks->dir, "deactivated", NULL);
	char *data = NULL;
	GError *gerr = NULL;
	int rc = SG_OK;

	if (!g_file_get_contents(path, &data, NULL, &gerr)) {
		if (g_error_matches(gerr, G_FILE_ERROR, G_FILE_ERROR_NOENT))
			data = g_strdup("");
		else
			rc = sg_err_set(err, SG_EKEYSTORE, "cannot read %s: %s",
			    path, gerr->message);
		g_error_free(gerr);
	}
	*lines = rc == 0 ? g_strsplit(data, "\n", -1) : NULL;
	g_free(data);
	g_free(path);
	return rc;
}

bool
sg_keystore_deactivated(const struct sg_keystore *ks, const char *addr)
{
	char **lines;
	bool found = false;

	if (ks->index != NULL)
		return sg_keyindex_deactivated(ks->index, addr);
	/* Unreadable: everybody counts as deactivated. */
	if (sg_keystore_read_deactivated(ks, &lines, &(struct sg_err){ 0 }) < 0)
		return true;
	for (char **l = lines; *l != NULL && !found; l++)
		found = **l && g_ascii_strcasecmp(g_strstrip(*l), addr) == 0;
	g_strfreev(lines);
	return found;
}

int
sg_keystore_set_deactivated(const struct sg_keystore *ks, const char *addr,
			    bool on, bool *changed, struct sg_err *err)
{
	char **lines;
	GString *out;
	char *path;
	GError *gerr = NULL;
	bool present = false;
	int rc;

	*changed = false;
	rc = sg_keystore_read_deactivated(ks, &lines, err);
	if (rc < 0)
		return rc;
	out = g_string_new(NULL);
	path = g_build_filename(ks->dir, "deactivated", NULL);
	for (char **l = lines; *l != NULL; l++) {
		g_strstrip(*l);
		if (**l == '\0')
			continue;
		if (g_ascii_strcasecmp(*l, addr) == 0) {
			present = true;
			if (!on)
				continue;
		}
		g_string_append_printf(out, "%s\n", *l);
	}
	*changed = present != on;
	if (on && !present)
		g_string_append_printf(out, "%s\n", addr);
	/* The generation is bumped before and after the change: a command
	 * killed between the change and the second bump has still made the
	 * change visible (see sg_keystore_bump). */
	if (*changed)
		rc = sg_keystore_bump(ks->dir, err);
	/* g_file_set_contents writes aside and renames. */
	if (rc == 0 && *changed &&
	    !g_file_set_contents(path, out->str, -1, &gerr)) {
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot write %s: %s", path,
		    gerr->message);
		g_error_free(gerr);
	}
	if (rc == 0)
		chmod(path, 0600);
	if (rc == 0 && *changed)
		rc = sg_keystore_bump(ks->dir, err);
	g_strfreev(lines);
	g_string_free(out, TRUE);
	g_free(path);
	return rc;
}

/* The name of uid, or its number. (transfer full) */
static char *
user_name(uid_t uid)
{
	struct passwd pw, *found = NULL;
	char buf[1024];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
		return g_strdup(found->pw_name);
	return g_strdup_printf("%u", (unsigned)uid);
}

int
sg_keystore_lock(const struct sg_keystore *ks, struct sg_err *err)
{
	/* The directory itself carries the lock: no file appears in it. */
	int fd = open(ks->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	char *owner;

	if (fd < 0 || fstat(fd, &st) < 0)
		goto fail;
	/* A change writes new files, and replaces whole parts of the store:
	 * made by another user (root, say), they would be unreadable for the
	 * gateway, which would then miss every key. */
	if (st.st_uid != geteuid()) {
		owner = user_name(st.st_uid);
		sg_err_set(err, SG_EKEYSTORE, "keystore %s belongs to user %s: "
		    "change it as that user, e.g. sudo -u %s sealgate keys ...",
		    ks->dir, owner, owner);
		g_free(owner);
		close(fd);
		return SG_EKEYSTORE;
	}
	if (flock(fd, LOCK_EX) == 0)
		return fd;
fail:
	sg_err_set(err, SG_EKEYSTORE, "cannot lock %s: %s", ks->dir,
	    strerror(errno));
	if (fd >= 0)
		close(fd);
	return SG_EKEYSTORE;
}

/*
 * Changes on a copy.
 *
 * gpg writes its keyring key by key, the agent writes secret keys file by
 * file, and a certificate bundle is many files: a change killed half-way
 * would leave part of it behind. A change is therefore made on a copy of
 * the part of the keystore it touches (openpgp/ or smime/), made beside it,
 * which then trades places with the original in one step (renameat2 with
 * RENAME_EXCHANGE). Until that step the original is untouched; after it
 * the change is complete. A copy left by a killed change is removed by
 * the next change of the same part.
 */

#define STAGE_INFIX ".new."

/* Sockets, lock files and half-written files stay behind. */
static bool
worth_copying(const char *name, const struct stat *st)
{
	if (S_ISDIR(st->st_mode))
		return true;
	return S_ISREG(st->st_mode) && !g_str_has_suffix(name, ".lock") &&
	    !g_str_has_prefix(name, ".#lk") && strstr(name, ".tmp") == NULL;
}

static int
copy_file(const char *from, const char *to, mode_t mode, struct sg_err *err)
{
	char buf[65536];
	ssize_t n = 0;
	int in, out, rc = SG_OK;

	in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
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

		if (lstat(src, &st) < 0 || (!S_ISLNK(st.st_mode) &&
		    !worth_copying(name, &st)))
			;
		else if (S_ISLNK(st.st_mode))
			rc = sg_err_set(err, SG_EKEYSTORE, "keystore: %s is a symbolic "
			    "link; the keystore holds no links: replace it with the "
			    "file or directory itself", src);
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

static int
remove_entry(const char *path, const struct stat *st, int type,
	     struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

void
sg_keystore_remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes copies of part left by changes that were killed. The caller
 * holds the keystore lock, so no other change is using one. */
static void
remove_leftovers(const char *part)
{
	char *parent = g_path_get_dirname(part);
	char *base = g_path_get_basename(part);
	char *prefix = g_strconcat(base, STAGE_INFIX, NULL);
	GDir *d = g_dir_open(parent, 0, NULL);
	const char *name;

	while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
		if (g_str_has_prefix(name, prefix)) {
			char *path = g_build_filename(parent, name, NULL);

			sg_keystore_remove_tree(path);
			g_free(path);
		}
	}
	if (d != NULL)
		g_dir_close(d);
	g_free(prefix);
	g_free(base);
	g_free(parent);
}

int
sg_keystore_stage_begin(const char *part, char **copy, struct sg_err *err)
{
	char *path;
	int rc;

	remove_leftovers(part);
	/* Beside the original: the exchange needs the same file system. */
	path = g_strconcat(part, STAGE_INFIX "XXXXXX", NULL);
	if (g_mkdtemp_full(path, 0700) == NULL) {
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot create %s: %s", path,
		    strerror(errno));
		g_free(path);
		return rc;
	}
	rc = copy_tree(part, path, err);
	if (rc < 0) {
		sg_keystore_stage_abort(path);
		return rc;
	}
	*copy = path;
	return SG_OK;
}

void
sg_keystore_stage_abort(char *copy)
{
	sg_keystore_remove_tree(copy);
	g_free(copy);
}

int
sg_keystore_stage_commit(const char *part, char *copy, struct sg_err *err)
{
	int fd, rc = SG_OK;

	/* On disk before it counts, so a crash cannot commit a torn copy. */
	fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || syncfs(fd) < 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot write %s: %s", copy,
		    strerror(errno));
	if (fd >= 0)
		close(fd);
	/* Bumped before the exchange too: a command killed after it has
	 * still announced the change (see sg_keystore_bump). */
	if (rc == 0) {
		char *dir = g_path_get_dirname(part);

		rc = sg_keystore_bump(dir, err);
		g_free(dir);
	}
	if (rc == 0 && renameat2(AT_FDCWD, copy, AT_FDCWD, part,
	    RENAME_EXCHANGE) < 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot replace %s atomically: "
		    "%s", part, strerror(errno));
	/* On success copy now holds the previous contents. */
	sg_keystore_stage_abort(copy);
	if (rc == 0) {
		char *dir = g_path_get_dirname(part);

		rc = sg_keystore_bump(dir, err);
		g_free(dir);
	}
	return rc;
}

/*
 * The generation file. A change replaces it (written aside, then renamed)
 * before and after the change itself: a gateway that builds a snapshot
 * between the two sees the second bump too, and a change whose command
 * is killed before the second has still been announced by the first. Its identity (inode), times and
 * size change with every replacement: one stat() per message tells a
 * daemon whether its snapshot is current.
 */
static char *
generation_path(const char *dir)
{
	return g_build_filename(dir, "generation", NULL);
}

void
sg_keystore_generation(const char *dir, struct sg_keystore_gen *out)
{
	char *path = generation_path(dir);
	struct stat st;

	memset(out, 0, sizeof(*out));
	if (stat(path, &st) == 0) {
		out->exists = true;
		out->dev = st.st_dev;
		out->ino = st.st_ino;
		out->size = st.st_size;
		out->mtime = st.st_mtim;
		out->ctime = st.st_ctim;
	}
	g_free(path);
}

static bool
same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

bool
sg_keystore_gen_equal(const struct sg_keystore_gen *a,
		      const struct sg_keystore_gen *b)
{
	if (a->exists != b->exists)
		return false;
	return !a->exists || (a->dev == b->dev && a->ino == b->ino &&
	    a->size == b->size && same_time(&a->mtime, &b->mtime) &&
	    same_time(&a->ctime, &b->ctime));
}

int
sg_keystore_bump(const char *dir, struct sg_err *err)
{
	char *path = generation_path(dir);
	char *cur = NULL, *next;
	GError *gerr = NULL;
	guint64 n = 0;
	int rc = SG_OK;

	if (g_file_get_contents(path, &cur, NULL, NULL))
		n = g_ascii_strtoull(cur, NULL, 10);
	next = g_strdup_printf("%" G_GUINT64_FORMAT "\n", n + 1);
	if (!g_file_set_contents(path, next, -1, &gerr)) {
		rc = sg_err_set(err, SG_EKEYSTORE, "the change is made, but %s "
		    "could not be written (%s): a running gateway sees it "
		    "after SIGUSR1", path, gerr->message);
		g_error_free(gerr);
	} else {
		chmod(path, 0600);
	}
	g_free(next);
	g_free(cur);
	g_free(path);
	return rc;
}
