/* Replays inputs through a fuzz target without libFuzzer: every regular
 * file of each directory given (in name order), or a file given itself,
 * goes to LLVMFuzzerTestOneInput once. So the seed corpora and every
 * input a fuzzer found run as ordinary tests, in the normal and the ASan
 * build. Exits 1 when an argument cannot be read or holds no input at
 * all (a test that replays nothing must not pass); a failing input
 * aborts, naming itself first. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "fuzz_env.h"

/* The sanitizers' runtime, when the build has one: called before a
 * sanitizer ends the process. */
void __sanitizer_set_death_callback(void (*callback)(void))
	__attribute__((weak));

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

int
main(int argc, char **argv)
{
	unsigned count = 0;
	struct stat st;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 1;
	}
	if (__sanitizer_set_death_callback != NULL)
		__sanitizer_set_death_callback(fuzz_cleanup);
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
