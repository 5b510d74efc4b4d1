/* Replays inputs through a fuzz target without libFuzzer: every regular
 * file of each directory given (in name order), or a file given itself,
 * goes to LLVMFuzzerTestOneInput once. So the seed corpora and every
 * input a fuzzer found run as ordinary tests, in the normal and the ASan
 * build. Exits 1 when an argument cannot be read or holds no input at
 * all (a test that replays nothing must not pass); a failing input
 * aborts, naming itself first. The target runs in a child process with
 * its own TMPDIR, which the parent removes afterwards with every
 * gpg-agent of a GnuPG home in it, however the child ended. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "openpgp_int.h"
#include "sealgate/keystore.h"
#include "fuzz_env.h"

static int
replay_file(const char *path)
{
	GError *gerr = NULL;
	gchar *data;
	gsize len;

	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		fprintf(stderr, "replay: %s\n", gerr->message);
		g_error_free(gerr);
		return -1;
	}
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, (size_t)len);
	LLVMFuzzerTestOneInput((const uint8_t *)data, len);
	g_free(data);
	return 0;
}

static int
compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays the files of dir; *count is increased by their number. */
static int
replay_dir(const char *dir, unsigned *count)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		g_ptr_array_free(names, TRUE);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		char *path = g_build_filename(dir, de->d_name, NULL);
		struct stat st;

		if (de->d_name[0] != '.' && stat(path, &st) == 0 &&
		    S_ISREG(st.st_mode))
			g_ptr_array_add(names, path);
		else
			g_free(path);
	}
	closedir(d);
	g_ptr_array_sort(names, compare);
	for (guint i = 0; i < names->len && rc == 0; i++) {
		rc = replay_file(g_ptr_array_index(names, i));
		(*count)++;
	}
	g_ptr_array_free(names, TRUE);
	return rc;
}

static int
replay(int argc, char **argv)
{
	unsigned count = 0;
	struct stat st;

	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
			    strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode) ? replay_dir(argv[i], &count) < 0
		    : (count++, replay_file(argv[i]) < 0))
			return 1;
	}
	if (count == 0) {
		fprintf(stderr, "replay: no input\n");
		return 1;
	}
	fprintf(stderr, "replay: %u input(s), no failure\n", count);
	return 0;
}

/* Stops the gpg-agent of every GnuPG home under dir and removes them. */
static void
remove_homes(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	char *conf = g_build_filename(dir, "gpg.conf", NULL);

	if (g_file_test(conf, G_FILE_TEST_EXISTS)) {
		sg_pgp_remove_home(dir);
	} else {
		while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
			char *path = g_build_filename(dir, name, NULL);

			if (g_file_test(path, G_FILE_TEST_IS_DIR) &&
			    !g_file_test(path, G_FILE_TEST_IS_SYMLINK))
				remove_homes(path);
			g_free(path);
		}
	}
	if (d != NULL)
		g_dir_close(d);
	g_free(conf);
}

int
main(int argc, char **argv)
{
	GError *gerr = NULL;
	char *tmp;
	pid_t pid;
	int status;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 1;
	}
	tmp = g_dir_make_tmp("sgreplay.XXXXXX", &gerr);
	if (tmp == NULL) {
		fprintf(stderr, "replay: %s\n", gerr->message);
		return 1;
	}
	fflush(stderr);
	pid = fork();
	if (pid == 0) {
		g_setenv("TMPDIR", tmp, TRUE);
		exit(replay(argc, argv));
	}
	if (pid < 0)
		fprintf(stderr, "replay: fork: %s\n", strerror(errno));
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	remove_homes(tmp);
	sg_keystore_remove_tree(tmp);
	g_free(tmp);
	if (pid < 0)
		return 1;
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "replay: the target ended on signal %d\n",
		    WTERMSIG(status));
		return 1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
