/* No symbolic links in the keystore. A link would let a file the checks
 * never see stand in for a key (a world-readable private key passes a
 * mode check made through the link), and a change, which copies the
 * store, would silently drop it. The whole tree is checked each time the
 * keystore is opened; a directory whose identity and times are those of
 * its last clean check is not listed again, since adding, removing or
 * replacing an entry changes its times. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "keystore_int.h"

#define MAX_DEPTH 8
#define MAX_CACHED 256

struct clean_dir {
	struct stat st;
	GPtrArray *subdirs;     /* char *: names of its subdirectories */
};

static GMutex clean_lock;
static GHashTable *clean_dirs;  /* path -> struct clean_dir * */

static void
clean_dir_free(gpointer p)
{
	struct clean_dir *c = p;

	g_ptr_array_unref(c->subdirs);
	g_free(c);
}

static bool
same_times(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	    a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	    a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	    a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The subdirectories of path when it was found clean as st shows it, or
 * NULL. (transfer full) */
static GPtrArray *
known_clean(const char *path, const struct stat *st)
{
	struct clean_dir *c;
	GPtrArray *subdirs = NULL;

	g_mutex_lock(&clean_lock);
	c = clean_dirs != NULL ? g_hash_table_lookup(clean_dirs, path) : NULL;
	if (c != NULL && same_times(&c->st, st))
		subdirs = g_ptr_array_ref(c->subdirs);
	g_mutex_unlock(&clean_lock);
	return subdirs;
}

static void
remember_clean(const char *path, const struct stat *st, GPtrArray *subdirs)
{
	struct clean_dir *c = g_new0(struct clean_dir, 1);

	c->st = *st;
	c->subdirs = g_ptr_array_ref(subdirs);
	g_mutex_lock(&clean_lock);
	if (clean_dirs == NULL || g_hash_table_size(clean_dirs) >= MAX_CACHED) {
		if (clean_dirs != NULL)
			g_hash_table_destroy(clean_dirs);
		clean_dirs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
		    clean_dir_free);
	}
	g_hash_table_replace(clean_dirs, g_strdup(path), c);
	g_mutex_unlock(&clean_lock);
}

static int
link_error(const char *path, struct sg_err *err)
{
	return sg_err_set(err, SG_EKEYSTORE, "keystore: %s is a symbolic link; "
	    "the keystore holds no links (a link can put any file in the place "
	    "of a key): replace it with the file or directory itself", path);
}

/* Lists directory path (open as fd): refuses links, and returns the
 * names of its subdirectories in *out. */
static int
list_dir(const char *path, int fd, GPtrArray **out, struct sg_err *err)
{
	GPtrArray *subdirs = g_ptr_array_new_with_free_func(g_free);
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;
	struct stat st;
	int rc = SG_OK;

	if (d == NULL) {
		rc = sg_err_set(err, SG_EKEYSTORE, "keystore: cannot read %s: %s",
		    path, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		goto out;
	}
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char *sub;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
		    fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone meanwhile */
		sub = g_build_filename(path, e->d_name, NULL);
		if (S_ISLNK(st.st_mode))
			rc = link_error(sub, err);
		else if (S_ISDIR(st.st_mode))
			g_ptr_array_add(subdirs, g_strdup(e->d_name));
		g_free(sub);
	}
	closedir(d);
out:
	if (rc == 0)
		*out = subdirs;
	else
		g_ptr_array_unref(subdirs);
	return rc;
}

static int
check_tree(const char *path, int depth, struct sg_err *err)
{
	GPtrArray *subdirs = NULL;
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? SG_OK : sg_err_set(err, SG_EKEYSTORE,
		    "keystore: cannot read %s: %s", path, strerror(errno));
	if (S_ISLNK(st.st_mode))
		return link_error(path, err);
	if (!S_ISDIR(st.st_mode) || depth > MAX_DEPTH)
		return SG_OK;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = errno == ELOOP ? link_error(path, err) : sg_err_set(err,
		    SG_EKEYSTORE, "keystore: cannot read %s: %s", path,
		    strerror(errno));
		goto out;
	}
	subdirs = known_clean(path, &st);
	if (subdirs == NULL) {
		rc = list_dir(path, fd, &subdirs, err);
		if (rc < 0)
			goto out;
		remember_clean(path, &st, subdirs);
	}
	rc = SG_OK;
	for (guint i = 0; rc == 0 && i < subdirs->len; i++) {
		char *sub = g_build_filename(path, g_ptr_array_index(subdirs, i),
		    NULL);

		rc = check_tree(sub, depth + 1, err);
		g_free(sub);
	}
out:
	if (subdirs != NULL)
		g_ptr_array_unref(subdirs);
	if (fd >= 0)
		close(fd);
	return rc;
}

int
sg_keystore_check_links(const char *dir, struct sg_err *err)
{
	char *path = g_strdup(dir);
	size_t n = strlen(path);
	int rc;

	/* "store/" would name what a link "store" points to. */
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	rc = check_tree(path, 0, err);
	g_free(path);
	return rc;
}
