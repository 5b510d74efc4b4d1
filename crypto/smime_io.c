/* OpenSSL BIOs over sealgate's reader and writer callbacks, so that CMS
 * streams message data without holding it in memory; and over keystore
 * files, which are never reached through a link. */
#include <fcntl.h>
#include <unistd.h>

#include <openssl/bio.h>

#include <glib.h>

#include "smime_int.h"

static BIO_METHOD *reader_method, *writer_method;

static int
reader_read(BIO *b, char *buf, int len)
{
	struct sg_reader *r = BIO_get_data(b);
	size_t n = 0;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (r->read(r->ctx, buf, (size_t)len, &n) < 0)
		return -1;
	return (int)n;
}

static int
writer_write(BIO *b, const char *buf, int len)
{
	struct sg_writer *w = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (w->write(w->ctx, buf, (size_t)len) < 0)
		return -1;
	return len;
}

static long
io_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	default:
		return 0;
	}
}

static int
io_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static gpointer
make_methods(gpointer unused)
{
	(void)unused;
	reader_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "sealgate reader");
	BIO_meth_set_read(reader_method, reader_read);
	BIO_meth_set_ctrl(reader_method, io_ctrl);
	BIO_meth_set_create(reader_method, io_create);
	writer_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "sealgate writer");
	BIO_meth_set_write(writer_method, writer_write);
	BIO_meth_set_ctrl(writer_method, io_ctrl);
	BIO_meth_set_create(writer_method, io_create);
	return NULL;
}

static void
ensure_methods(void)
{
	static GOnce once = G_ONCE_INIT;

	g_once(&once, make_methods, NULL);
}

BIO *
sg_bio_reader(struct sg_reader *r)
{
	BIO *b;

	ensure_methods();
	b = BIO_new(reader_method);
	if (b != NULL)
		BIO_set_data(b, r);
	return b;
}

BIO *
sg_bio_writer(struct sg_writer *w)
{
	BIO *b;

	ensure_methods();
	b = BIO_new(writer_method);
	if (b != NULL)
		BIO_set_data(b, w);
	return b;
}

BIO *
sg_bio_keystore_file(const char *path)
{
	char buf[16384];
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	BIO *b = fd >= 0 ? BIO_new(BIO_s_mem()) : NULL;
	ssize_t n = 0;

	while (b != NULL && (n = read(fd, buf, sizeof(buf))) > 0)
		if (BIO_write(b, buf, (int)n) != (int)n)
			n = -1;
	if (b != NULL && n < 0) {
		BIO_free(b);
		b = NULL;
	}
	if (fd >= 0)
		close(fd);
	return b;
}
