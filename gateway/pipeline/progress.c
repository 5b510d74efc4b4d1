/* Progress reports; see include/sealgate/progress.h. */
#include <string.h>
#include <time.h>

#include "sealgate/progress.h"

static long long
now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void
sg_progress_init(struct sg_progress *p, void (*fn)(void *), void *arg)
{
	memset(p, 0, sizeof(*p));
	p->fn = fn;
	p->arg = arg;
	p->last_ms = now_ms();
}

void
sg_progress_add_at(struct sg_progress *p, size_t n, long long now)
{
	if (p == NULL || p->fn == NULL)
		return;
	p->bytes += n;
	if (p->bytes < SG_PROGRESS_BYTES && now - p->last_ms < SG_PROGRESS_MS)
		return;
	p->bytes = 0;
	p->last_ms = now;
	p->calls++;
	p->fn(p->arg);
}

void
sg_progress_add(struct sg_progress *p, size_t n)
{
	if (p != NULL && p->fn != NULL)
		sg_progress_add_at(p, n, now_ms());
}
