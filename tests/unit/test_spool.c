/* The spool for plaintext (sg_spool_new_secret): a file from the start,
 * without a name, mode 0600; truncated when it is freed; refused at once
 * where no file can be made. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "sealgate/spool.h"

static char *
new_dir(void)
{
	char *dir = g_dir_make_tmp("sgspool.XXXXXX", NULL);

	assert_non_null(dir);
	return dir;
}

static int
entries(const char *dir)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	int n = 0;

	assert_non_null(d);
	while (g_dir_read_name(d) != NULL)
		n++;
	g_dir_close(d);
	return n;
}

static void
test_secret_spool(void **state)
{
	char *dir = new_dir();
	struct sg_spool *sp = NULL;
	GMimeStream *s;
	struct stat st;
	char buf[16];
	size_t n;
	int fd;

	(void)state;
	assert_int_equal(sg_spool_new_secret(dir, &sp), 0);
	assert_true(sg_spool_on_disk(sp));
	assert_int_equal(sg_spool_write_crlf(sp, "plain\ntext", 10), 0);
	assert_int_equal(sg_spool_size(sp), 11);
	assert_int_equal(sg_spool_read_at(sp, 0, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 11);
	assert_memory_equal(buf, "plain\r\ntext", 11);
	/* No name in the directory; the file itself is 0600. */
	assert_int_equal(entries(dir), 0);
	s = sg_spool_stream(sp, 0, -1);
	assert_non_null(s);
	fd = GMIME_STREAM_FS(s)->fd;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, 11);
	/* Freed: the file is truncated, also for a descriptor that is
	 * still open. */
	sg_spool_free(sp);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	g_object_unref(s);
	assert_int_equal(entries(dir), 0);
	rmdir(dir);
	g_free(dir);
}

static void
test_secret_spool_refused(void **state)
{
	char *dir = new_dir(), *file = g_build_filename(dir, "file", NULL);
	char *missing = g_build_filename(dir, "missing", NULL);
	struct sg_spool *sp = NULL;

	(void)state;
	assert_true(g_file_set_contents(file, "x", 1, NULL));
	assert_int_equal(sg_spool_new_secret(missing, &sp), SG_EIO);
	assert_int_equal(sg_spool_new_secret(file, &sp), SG_EIO);
	assert_null(sp);
	unlink(file);
	rmdir(dir);
	g_free(file);
	g_free(missing);
	g_free(dir);
}

static void
test_write_stream(void **state)
{
	GMimeStream *in = g_mime_stream_mem_new_with_buffer("0123456789", 10);
	GMimeStream *sub = g_mime_stream_substream(in, 2, 7);
	struct sg_spool *sp;
	char buf[16];
	size_t n;

	(void)state;
	assert_int_equal(sg_spool_new("/tmp", 1024, &sp), 0);
	/* A bounded stream ends in -1: the end, not an error. */
	assert_int_equal(sg_spool_write_stream(sp, sub), 0);
	assert_int_equal(sg_spool_read_at(sp, 0, buf, sizeof(buf), &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "23456", 5);
	sg_spool_free(sp);
	g_object_unref(sub);
	g_object_unref(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret_spool),
		cmocka_unit_test(test_secret_spool_refused),
		cmocka_unit_test(test_write_stream),
	};

	g_mime_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
