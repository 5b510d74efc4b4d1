/* Progress during long work. The pipeline reports the bytes it reads and
 * writes while it encrypts or signs, and the plaintext it writes while it
 * decrypts; the front end's function
 * is called whenever SG_PROGRESS_BYTES more have passed or
 * SG_PROGRESS_MS have elapsed since the last call (checked at each
 * report), so the milter can tell the MTA that the work goes on
 * (smfi_progress) long before its content timeout. */
#ifndef SEALGATE_PROGRESS_H
#define SEALGATE_PROGRESS_H

#include <stddef.h>

#define SG_PROGRESS_BYTES	(1024 * 1024)
#define SG_PROGRESS_MS		1000

struct sg_progress {
	void (*fn)(void *arg);
	void *arg;
	long long last_ms;      /* monotonic ms of the last call (or start) */
	size_t bytes;           /* since the last call */
	unsigned long calls;    /* how often fn was called */
};

/* A progress that calls fn(arg), counting from now. */
void sg_progress_init(struct sg_progress *p, void (*fn)(void *), void *arg);

/* n more bytes were read or written; p may be NULL (no progress
 * wanted). */
void sg_progress_add(struct sg_progress *p, size_t n);

/* The same at now_ms (the monotonic clock in milliseconds). */
void sg_progress_add_at(struct sg_progress *p, size_t n, long long now_ms);

#endif
