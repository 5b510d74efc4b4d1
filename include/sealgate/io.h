/* Minimal reader/writer callbacks, so that crypto/ can stream message data
 * from and to wherever the caller keeps it (spool, memory, file). */
#ifndef SEALGATE_IO_H
#define SEALGATE_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Reads up to len bytes into buf; *nread 0 means end of data.
 * Returns 0 or a negative SG_E* code. */
struct sg_reader {
	int (*read)(void *ctx, void *buf, size_t len, size_t *nread);
	void *ctx;
};

/* Bytes that stay where they are (a spool), read at any offset: up to
 * len bytes at off into buf, *nread 0 at the end; size bytes in all.
 * Returns 0 or a negative SG_E* code. */
struct sg_source {
	int (*read_at)(void *ctx, off_t off, void *buf, size_t len,
		       size_t *nread);
	void *ctx;
	off_t size;
};

/* Writes all len bytes. Returns 0 or a negative SG_E* code. */
struct sg_writer {
	int (*write)(void *ctx, const void *buf, size_t len);
	void *ctx;
};

#endif
