/* Memory-then-file byte spool; see include/sealgate/spool.h. */
#define _GNU_SOURCE /* O_TMPFILE */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sealgate/spool.h"

/* On disk, writes are gathered into this many bytes: a body spooled line
 * by line would otherwise cost a system call per line. */
#define WBUF_SIZE (64 * 1024)

struct sg_spool {
	char *dir;
	size_t mem_limit;
	GByteArray *mem; /* NULL once on disk */
	int fd;          /* -1 while in memory */
	char *wbuf;      /* on disk: the last wlen bytes, not written yet */
	size_t wlen;
	size_t size;     /* written and buffered */
	int last_cr;     /* for sg_spool_write_crlf */
	int error;       /* errno of the first failure, 0 when none */
	bool secret;     /* wbuf zeroed, the file truncated, when freed */
};

int
sg_spool_new(const char *dir, size_t mem_limit, struct sg_spool **out)
{
	struct sg_spool *sp;

	sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return SG_ENOMEM;
	sp->dir = strdup(dir != NULL ? dir : "/tmp");
	sp->mem = g_byte_array_new();
	sp->mem_limit = mem_limit;
	sp->fd = -1;
	if (sp->dir == NULL) {
		sg_spool_free(sp);
		return SG_ENOMEM;
	}
	*out = sp;
	return SG_OK;
}

static int
full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return SG_EIO;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return SG_OK;
}

/* A 0600 file in dir that has no name: O_TMPFILE where the file system
 * has it, else a temp file unlinked right after it was created. */
static int
nameless_file(const char *dir)
{
	char *path;
	int fd;

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	path = g_strdup_printf("%s/sealgate.XXXXXX", dir);
	fd = mkstemp(path); /* creates the file with mode 0600 */
	if (fd >= 0)
		unlink(path);
	g_free(path);
	return fd;
}

/* Keeps the first failure's errno for sg_spool_error. */
static int
failed(struct sg_spool *sp)
{
	if (sp->error == 0)
		sp->error = errno != 0 ? errno : EIO;
	return SG_EIO;
}

int
sg_spool_new_secret(const char *dir, struct sg_spool **out)
{
	struct sg_spool *sp;
	int rc;

	rc = sg_spool_new(dir, 0, &sp);
	if (rc < 0)
		return rc;
	sp->secret = true;
	sp->fd = nameless_file(sp->dir);
	if (sp->fd < 0) {
		sg_spool_free(sp);
		return SG_EIO;
	}
	g_byte_array_free(sp->mem, TRUE);
	sp->mem = NULL;
	sp->wbuf = g_malloc(WBUF_SIZE);
	sp->wlen = 0;
	*out = sp;
	return SG_OK;
}

/* Moves the in-memory bytes to a fresh, nameless 0600 temp file. */
static int
spool_to_disk(struct sg_spool *sp)
{
	int fd, rc;

	fd = nameless_file(sp->dir);
	if (fd < 0)
		return failed(sp);
	rc = full_pwrite(fd, sp->mem->data, sp->mem->len, 0);
	if (rc < 0) {
		rc = failed(sp);
		close(fd);
		return rc;
	}
	g_byte_array_free(sp->mem, TRUE);
	sp->mem = NULL;
	sp->fd = fd;
	sp->wbuf = g_malloc(WBUF_SIZE);
	sp->wlen = 0;
	return SG_OK;
}

/* Writes the buffered bytes to the file; every read of a spool on disk
 * does this first. */
static int
spool_flush(struct sg_spool *sp)
{
	int rc;

	if (sp->wlen == 0)
		return SG_OK;
	rc = full_pwrite(sp->fd, sp->wbuf, sp->wlen, (off_t)(sp->size - sp->wlen));
	if (rc == 0)
		sp->wlen = 0;
	return rc;
}

int
sg_spool_write(struct sg_spool *sp, const void *buf, size_t len)
{
	int rc;

	if (len == 0)
		return SG_OK;
	if (sp->mem != NULL && sp->mem->len + len > sp->mem_limit) {
		rc = spool_to_disk(sp);
		if (rc < 0)
			return rc;
	}
	if (sp->mem != NULL) {
		g_byte_array_append(sp->mem, buf, (guint)len);
	} else if (sp->wlen + len <= WBUF_SIZE) {
		memcpy(sp->wbuf + sp->wlen, buf, len);
		sp->wlen += len;
	} else {
		rc = spool_flush(sp);
		if (rc == 0 && len < WBUF_SIZE) {
			memcpy(sp->wbuf, buf, len);
			sp->wlen = len;
		} else if (rc == 0) {
			rc = full_pwrite(sp->fd, buf, len, (off_t)sp->size);
		}
		if (rc < 0)
			return failed(sp);
	}
	sp->size += len;
	return SG_OK;
}

int
sg_spool_puts(struct sg_spool *sp, const char *s)
{
	return sg_spool_write(sp, s, strlen(s));
}

int
sg_spool_write_crlf(struct sg_spool *sp, const void *buf, size_t len)
{
	const char *begin = buf, *end = begin + len, *start = begin, *p;
	int rc;

	for (p = begin; p < end; p++) {
		if (*p == '\n' && !(p > begin ? p[-1] == '\r' : sp->last_cr)) {
			rc = sg_spool_write(sp, start, (size_t)(p - start));
			if (rc == 0)
				rc = sg_spool_write(sp, "\r\n", 2);
			if (rc < 0)
				return rc;
			start = p + 1;
		}
	}
	rc = sg_spool_write(sp, start, (size_t)(end - start));
	if (len > 0)
		sp->last_cr = end[-1] == '\r';
	return rc;
}

int
sg_spool_write_stream(struct sg_spool *sp, GMimeStream *in)
{
	char buf[65536];
	ssize_t n = 0;
	int rc = SG_OK;

	while (rc == 0 && (n = g_mime_stream_read(in, buf, sizeof(buf))) > 0)
		rc = sg_spool_write(sp, buf, (size_t)n);
	/* A bounded GMime stream answers -1 at its end. */
	if (rc == 0 && n < 0 && !g_mime_stream_eos(in))
		rc = SG_EIO;
	return rc;
}

static int
source_read_at(void *ctx, off_t off, void *buf, size_t len, size_t *nread)
{
	return sg_spool_read_at(ctx, off, buf, len, nread);
}

void
sg_spool_source(struct sg_spool *sp, struct sg_source *out)
{
	out->read_at = source_read_at;
	out->ctx = sp;
	out->size = (off_t)sp->size;
}

size_t
sg_spool_size(const struct sg_spool *sp)
{
	return sp->size;
}

int
sg_spool_error(const struct sg_spool *sp)
{
	return sp->error;
}

int
sg_spool_on_disk(const struct sg_spool *sp)
{
	return sp->fd >= 0;
}

int
sg_spool_read_at(struct sg_spool *sp, off_t off, void *buf, size_t len,
		 size_t *nread)
{
	ssize_t n;

	*nread = 0;
	if (off < 0 || (size_t)off >= sp->size)
		return SG_OK;
	if (len > sp->size - (size_t)off)
		len = sp->size - (size_t)off;
	if (sp->mem != NULL) {
		memcpy(buf, sp->mem->data + off, len);
		*nread = len;
		return SG_OK;
	}
	if (spool_flush(sp) < 0)
		return SG_EIO;
	do {
		n = pread(sp->fd, buf, len, off);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return SG_EIO;
	*nread = (size_t)n;
	return SG_OK;
}

GMimeStream *
sg_spool_stream(struct sg_spool *sp, off_t start, off_t end)
{
	GMimeStream *base, *sub;
	int fd;

	if (end < 0)
		end = (off_t)sp->size;
	if (sp->mem != NULL) {
		base = g_mime_stream_mem_new_with_byte_array(sp->mem);
		g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(base), FALSE);
	} else {
		if (spool_flush(sp) < 0)
			return NULL;
		fd = dup(sp->fd);
		if (fd < 0)
			return NULL;
		base = g_mime_stream_fs_new(fd);
	}
	sub = g_mime_stream_substream(base, start, end);
	g_object_unref(base);
	return sub;
}

void
sg_spool_free(struct sg_spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->mem != NULL)
		g_byte_array_free(sp->mem, TRUE);
	/* The file has no name; its blocks go back now rather than when
	 * the last descriptor a stream dup()ed of it is closed. */
	while (sp->fd >= 0 && sp->secret && ftruncate(sp->fd, 0) < 0 &&
	    errno == EINTR)
		;
	if (sp->fd >= 0)
		close(sp->fd);
	if (sp->wbuf != NULL && sp->secret)
		memset(sp->wbuf, 0, WBUF_SIZE);
	g_free(sp->wbuf);
	free(sp->dir);
	free(sp);
}
