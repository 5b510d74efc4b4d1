/* Spool: a byte buffer kept in memory up to a bound, then moved to a 0600
 * temporary file that is unlinked as soon as it is created, so nothing stays
 * on disk when the process dies. Used for the incoming message and for the
 * replacement body. Not thread-safe; one spool belongs to one message. */
#ifndef SEALGATE_SPOOL_H
#define SEALGATE_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

#include <gmime/gmime.h>

#include "sealgate/error.h"
#include "sealgate/io.h"

#define SG_SPOOL_MEM_LIMIT (1024 * 1024)

struct sg_spool;

/* Creates an empty spool that moves to a temp file in dir (a directory that
 * must exist) once it holds more than mem_limit bytes. */
int sg_spool_new(const char *dir, size_t mem_limit, struct sg_spool **out);

/* Creates an empty spool for plaintext that is not released yet: a temp
 * file in dir from the start (in memory only what the write buffer holds
 * until it is written), made now, so that SG_EIO says at once when dir
 * cannot take one. Freeing it zeroes the buffer and truncates the file
 * before closing it. */
int sg_spool_new_secret(const char *dir, struct sg_spool **out);

/* Appends len bytes. On disk, small writes are gathered in a buffer and
 * written before the next read: a write error may show only then. */
int sg_spool_write(struct sg_spool *sp, const void *buf, size_t len);

/* Appends a NUL-terminated string. */
int sg_spool_puts(struct sg_spool *sp, const char *s);

/* Appends text converting every bare LF to CRLF (state kept across calls). */
int sg_spool_write_crlf(struct sg_spool *sp, const void *buf, size_t len);

/* Appends everything in delivers, to its end; SG_EIO also when in
 * cannot be read. */
int sg_spool_write_stream(struct sg_spool *sp, GMimeStream *in);

/* The spool as a struct sg_source (valid while nothing is written to it
 * and it is not freed). */
void sg_spool_source(struct sg_spool *sp, struct sg_source *out);

/* Total number of bytes written. */
size_t sg_spool_size(const struct sg_spool *sp);

/* The errno of the first write that failed (e.g. ENOSPC), 0 when none
 * did: why the spool returned SG_EIO. */
int sg_spool_error(const struct sg_spool *sp);

/* True once the data lives in a temp file rather than in memory. */
int sg_spool_on_disk(const struct sg_spool *sp);

/* Reads up to len bytes from offset off; *nread is 0 at the end. */
int sg_spool_read_at(struct sg_spool *sp, off_t off, void *buf, size_t len,
		     size_t *nread);

/* A read-only GMime stream over bytes [start, end) of the spool; end < 0
 * means "to the end". (transfer full) */
GMimeStream *sg_spool_stream(struct sg_spool *sp, off_t start, off_t end);

/* Frees the spool and closes (and so deletes) its temp file; a secret
 * spool's buffer is zeroed and its file truncated first. NULL is fine. */
void sg_spool_free(struct sg_spool *sp);

#endif
