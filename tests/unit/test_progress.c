/* Progress reports (sg_progress_add_at): called after every
 * SG_PROGRESS_BYTES or SG_PROGRESS_MS, whichever comes first, and never
 * in between. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sealgate/progress.h"

static void
count(void *arg)
{
	(*(int *)arg)++;
}

static void
start(struct sg_progress *p, int *n)
{
	*n = 0;
	sg_progress_init(p, count, n);
	p->last_ms = 1000;
}

static void
test_bytes(void **state)
{
	struct sg_progress p;
	int n;

	(void)state;
	start(&p, &n);
	sg_progress_add_at(&p, SG_PROGRESS_BYTES - 1, 1000);
	assert_int_equal(n, 0);
	sg_progress_add_at(&p, 1, 1000);
	assert_int_equal(n, 1);
	/* The count starts again after a call. */
	sg_progress_add_at(&p, SG_PROGRESS_BYTES - 1, 1000);
	assert_int_equal(n, 1);
	/* One large block is one call. */
	sg_progress_add_at(&p, 10 * SG_PROGRESS_BYTES, 1000);
	assert_int_equal(n, 2);
	assert_int_equal(p.calls, 2);
}

static void
test_time(void **state)
{
	struct sg_progress p;
	int n;

	(void)state;
	start(&p, &n);
	sg_progress_add_at(&p, 1, 1000 + SG_PROGRESS_MS - 1);
	assert_int_equal(n, 0);
	sg_progress_add_at(&p, 0, 1000 + SG_PROGRESS_MS);
	assert_int_equal(n, 1);
	sg_progress_add_at(&p, 0, 1000 + 2 * SG_PROGRESS_MS - 1);
	assert_int_equal(n, 1);
	sg_progress_add_at(&p, 0, 1000 + 5 * SG_PROGRESS_MS);
	assert_int_equal(n, 2);
}

static void
test_none_wanted(void **state)
{
	struct sg_progress p = { 0 };

	(void)state;
	/* Neither a NULL progress nor one without a function is called. */
	sg_progress_add(NULL, SG_PROGRESS_BYTES);
	sg_progress_add_at(&p, SG_PROGRESS_BYTES, 1000000);
	assert_int_equal(p.calls, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_none_wanted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
