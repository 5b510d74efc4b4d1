/* The keystore snapshot in force (see sealgate.h): built once, shared
 * read-only by the milter's threads, built anew when the keystore's
 * generation changes or on SIGUSR1. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "sealgate/addr.h"
#include "sealgate.h"

static struct {
	pthread_mutex_t lock;       /* guards ks, failed */
	pthread_mutex_t build;      /* one build at a time */
	struct sg_keystore *ks;
	bool failed;                /* the last build for failed_gen failed */
	struct sg_keystore_gen failed_gen;
	time_t failed_at;           /* when (CLOCK_MONOTONIC seconds) */
} cur = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, NULL, false,
	{ 0 }, 0 };

/* A build that failed is tried again at most this often (seconds). */
#define RETRY_SECONDS 1

static time_t
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec;
}

/* Whether the build for gen failed a moment ago. Call with cur.lock. */
static bool
failed_recently(const struct sg_keystore_gen *gen)
{
	return cur.failed && sg_keystore_gen_equal(&cur.failed_gen, gen) &&
	    now_s() - cur.failed_at < RETRY_SECONDS;
}

struct sg_keystore *
sg_open_snapshot_or_report(const struct sg_policy *pol)
{
	struct sg_keystore *ks = NULL;
	struct sg_err err = { 0 };

	if (sg_keystore_snapshot(pol->gateway.keystore, sg_addr_key, &err,
	    &ks) < 0) {
		sg_tprintf(stderr, "sealgate: %s\n", err.msg);
		return NULL;
	}
	return ks;
}

static long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	    (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static bool
current_for(const char *dir, const struct sg_keystore_gen *gen)
{
	return cur.ks != NULL && strcmp(cur.ks->dir, dir) == 0 &&
	    sg_keystore_gen_equal(&cur.ks->gen, gen);
}

/* Builds a snapshot of dir and puts it in force. On failure the previous
 * one stays for a forced build of the same generation (SIGUSR1); for a new
 * generation no snapshot is in force for it, so messages are deferred
 * (sg_keysnap_get) until a build succeeds: a stale snapshot could still
 * sign as a deactivated user or use a removed certificate. The failure
 * is logged once per generation. force: also when the generation is
 * unchanged. */
static void
rebuild(const char *dir, bool force, const char *why)
{
	struct sg_keystore *ks = NULL, *old = NULL;
	struct sg_keystore_gen gen;
	struct sg_err err = { 0 };
	struct timespec t0;
	bool skip;

	pthread_mutex_lock(&cur.build);
	sg_keystore_generation(dir, &gen);
	pthread_mutex_lock(&cur.lock);
	/* Another thread built it meanwhile, or failed on it already. */
	skip = !force && (current_for(dir, &gen) || failed_recently(&gen));
	pthread_mutex_unlock(&cur.lock);
	if (skip)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (sg_keystore_snapshot(dir, sg_addr_key, &err, &ks) < 0) {
		bool again;

		pthread_mutex_lock(&cur.lock);
		again = cur.failed && sg_keystore_gen_equal(&cur.failed_gen,
		    &gen);
		cur.failed = true;
		cur.failed_gen = gen;
		cur.failed_at = now_s();
		pthread_mutex_unlock(&cur.lock);
		if (!again)
			sg_log(SG_LOG_ERR, NULL, "keystore %s: %s: cannot build "
			    "a new snapshot: %s; %s", dir, why, err.msg,
			    current_for(dir, &gen) ? "the previous one stays "
			    "in force" : "messages are deferred until it can be "
			    "read");
		goto out;
	}
	pthread_mutex_lock(&cur.lock);
	old = cur.ks;
	cur.ks = ks;
	cur.failed = false;
	pthread_mutex_unlock(&cur.lock);
	sg_keystore_free(old);
	sg_log(SG_LOG_INFO, NULL, "keystore %s: %s: new snapshot in force "
	    "(%ld ms)", dir, why, ms_since(&t0));
out:
	pthread_mutex_unlock(&cur.build);
}

bool
sg_keysnap_start(const struct sg_policy *pol)
{
	struct sg_keystore *ks = sg_open_snapshot_or_report(pol);

	if (ks == NULL)
		return false;
	pthread_mutex_lock(&cur.lock);
	cur.ks = ks;
	pthread_mutex_unlock(&cur.lock);
	return true;
}

void
sg_keysnap_reload(const struct sg_policy *pol)
{
	rebuild(pol->gateway.keystore, true, "reload");
}

struct sg_keystore *
sg_keysnap_get(const struct sg_policy *pol)
{
	const char *dir = pol->gateway.keystore;
	struct sg_keystore_gen gen;
	struct sg_keystore *ks = NULL;
	bool stale;

	sg_keystore_generation(dir, &gen);
	pthread_mutex_lock(&cur.lock);
	stale = !current_for(dir, &gen) && !failed_recently(&gen);
	pthread_mutex_unlock(&cur.lock);
	if (stale)
		rebuild(dir, false, "changed");
	pthread_mutex_lock(&cur.lock);
	/* Never another keystore's snapshot, nor one older than the
	 * keystore: NULL defers the message. */
	if (current_for(dir, &gen))
		ks = sg_keystore_ref(cur.ks);
	pthread_mutex_unlock(&cur.lock);
	return ks;
}
