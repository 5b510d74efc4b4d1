/* `sealgate milter`: the daemon's start-up (policy, privileges, socket,
 * keystore snapshot, metrics), SIGUSR1 reloads and the stop. The libmilter
 * callbacks are in gateway/milter.c. */
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "sealgate/openpgp.h"
#include "sealgate.h"

static const char *policy_path;

/* Keys that only the start of the milter puts in force: its socket and
 * whom it runs as. A reload that changes them says so. */
static void
note_start_keys(const struct sg_policy *old, const struct sg_policy *pol)
{
	const struct {
		const char *name;
		bool same;
	} keys[] = {
		{ "socket", g_strcmp0(old->gateway.socket, pol->gateway.socket) == 0 },
		{ "socket_mode", old->gateway.socket_mode == pol->gateway.socket_mode },
		{ "socket_group", g_strcmp0(old->gateway.socket_group,
		    pol->gateway.socket_group) == 0 },
		{ "user", g_strcmp0(old->gateway.user, pol->gateway.user) == 0 },
		{ "group", g_strcmp0(old->gateway.group, pol->gateway.group) == 0 },
		{ "metrics", g_strcmp0(old->gateway.metrics,
		    pol->gateway.metrics) == 0 },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
		if (!keys[i].same)
			sg_log(SG_LOG_WARNING, NULL, "reload: gateway.%s changed; it "
			    "takes effect only when the milter is restarted",
			    keys[i].name);
}

/* SIGUSR1: build a new snapshot; keep the old one if the file is bad. */
static void *
reload_thread(void *arg)
{
	sigset_t *set = arg;
	GPtrArray *errors;
	struct sg_policy *pol, *old;
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0 || sig != SIGUSR1)
			continue;
		errors = g_ptr_array_new_with_free_func(g_free);
		if (sg_policy_load(policy_path, errors, &pol) < 0) {
			for (guint i = 0; i < errors->len; i++)
				sg_log(SG_LOG_ERR, NULL, "reload: %s",
				    (char *)g_ptr_array_index(errors, i));
			sg_log(SG_LOG_ERR, NULL, "reload of %s failed; the "
			    "previous policy stays in force", policy_path);
			sg_metrics_reload(false);
		} else {
			old = sg_milter_policy_swap(pol);
			note_start_keys(old, pol);
			sg_policy_unref(old);
			sg_log(SG_LOG_INFO, NULL, "policy %s reloaded", policy_path);
			sg_metrics_reload(true);
		}
		g_ptr_array_free(errors, TRUE);
		pol = sg_milter_policy();
		sg_keysnap_reload(pol);
		sg_policy_unref(pol);
	}
	return NULL;
}

/* The metrics' gauges at a scrape: from the keystore snapshot in force
 * for the current policy. Counting walks every key of the snapshot, so
 * the count is kept for that snapshot (its generation) for up to a minute:
 * scrapers in a loop cannot take the CPU from mail. */
static void
metrics_gauges(struct sg_metrics_gauges *g)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static struct {
		const struct sg_keystore *ks;
		struct sg_keystore_gen gen;
		time_t at;
		struct sg_expiring expiring;
	} cache;
	struct sg_policy *pol = sg_milter_policy();
	struct sg_keystore *ks = sg_keysnap_get(pol);
	time_t now = time(NULL);

	g->snapshot = ks != NULL;
	if (ks != NULL) {
		pthread_mutex_lock(&lock);
		if (cache.ks != ks || !sg_keystore_gen_equal(&cache.gen, &ks->gen) ||
		    now < cache.at || now - cache.at >= 60) {
			sg_keystore_expiring(ks, now, now + 30 * 86400,
			    &cache.expiring);
			cache.ks = ks;
			cache.gen = ks->gen;
			cache.at = now;
		}
		g->expiring = cache.expiring;
		pthread_mutex_unlock(&lock);
	}
	sg_keystore_free(ks);
	sg_policy_unref(pol);
}

static sigset_t reload_set;

/* Before the socket listens: a SIGUSR1 sent as soon as it accepts stays
 * pending for the reload thread instead of killing the process, and a
 * SIGTERM for libmilter's signal thread. Blocked here, so in every
 * thread started later. */
static bool
block_signals(void)
{
	sigset_t stop;

	sigemptyset(&reload_set);
	sigaddset(&reload_set, SIGUSR1);
	/* libmilter's own signal thread waits for these: no other thread may
	 * take them with the default (fatal) action. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGHUP);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	return pthread_sigmask(SIG_BLOCK, &reload_set, NULL) == 0 &&
	    pthread_sigmask(SIG_BLOCK, &stop, NULL) == 0;
}

static bool
start_reload_thread(void)
{
	pthread_t tid;

	if (pthread_create(&tid, NULL, reload_thread, &reload_set) != 0) {
		fprintf(stderr, "sealgate: cannot start the reload thread\n");
		return false;
	}
	pthread_detach(tid);
	return true;
}

/*
 * libmilter writes a reply per write(2): a progress or header change and
 * then the final answer. Over TCP, Nagle's algorithm holds the second
 * until the MTA acknowledges the first, which it delays (about 40 ms per
 * message). libmilter does not hand out its listening socket, so it is
 * found among ours; Linux passes TCP_NODELAY on to accepted connections.
 */
static void
no_delay_on_listeners(void)
{
	long max = sysconf(_SC_OPEN_MAX);
	int on = 1, listening, domain;
	socklen_t len;

	for (int fd = 0; fd < (max > 0 && max < 4096 ? max : 4096); fd++) {
		len = sizeof(listening);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
		    !listening)
			continue;
		len = sizeof(domain);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
		    (domain == AF_INET || domain == AF_INET6))
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	}
}

/* OpenSSL's security floor at start-up: logged (and on stderr when the
 * log goes to syslog); false when the daemon must not run. */
static bool
security_floor(const struct sg_policy *pol, bool log_stderr)
{
	char msg[SG_ERR_MAX];
	bool ok = sg_security_floor(pol, msg, sizeof(msg));

	if (msg[0] != '\0') {
		sg_log(SG_LOG_ERR, NULL, "%s", msg);
		if (!log_stderr)
			fprintf(stderr, "sealgate: %s\n", msg);
	}
	return ok;
}

/* Start-up failed after the socket opened: no socket file is left for
 * the MTA to find (best effort: the user may not write the directory). */
static void
remove_socket(const char *sock)
{
	const char *path = sg_privs_socket_path(sock);
	struct stat st;

	if (path != NULL && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
}

/* Opens the socket as started (root: a privileged port or directory),
 * with the permissions and owner of the gateway.socket_* keys. */
static bool
open_socket(const struct sg_privs *privs, const char *sock)
{
	bool ok;

	umask(sg_privs_socket_umask(privs));
	ok = sg_milter_register(sock);
	if (!ok)
		sg_tprintf(stderr, "sealgate: cannot set up milter socket %s\n",
		    sock);
	else if (!(ok = smfi_opensocket(true) == MI_SUCCESS))
		sg_tprintf(stderr, "sealgate: cannot listen on %s\n", sock);
	umask(0077);
	if (ok && !sg_privs_socket(privs, sock)) {
		remove_socket(sock);
		return false;
	}
	return ok;
}

int
sg_cmd_milter(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "foreground-log", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *sock = NULL, *user = NULL;
	struct sg_privs privs = { 0 };
	struct sg_policy *pol;
	bool log_stderr = false, ok;
	unsigned swept;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:u:f", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 's': sock = optarg; break;
		case 'u': user = optarg; break;
		case 'f': log_stderr = true; break;
		default: return SG_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "usage: sealgate milter [-c FILE] [-s SOCKET] "
		    "[-u USER] [-f]\n");
		return SG_EXIT_USAGE;
	}
	/* Before anything is read: a core file could hold plaintext. */
	umask(0077);
	if (!sg_privs_no_core_dumps())
		return SG_EXIT_USAGE;
	sg_log_open(log_stderr);
	policy_path = config != NULL ? config : sg_policy_default_path();
	pol = sg_load_policy_or_report(policy_path);
	if (pol == NULL || !security_floor(pol, log_stderr))
		return SG_EXIT_USAGE;
	/* The milter's own reference, which the reload thread replaces (and
	 * releases); pol stays this function's. */
	sg_milter_policy_init(sg_policy_ref(pol));
	if (sock == NULL)
		sock = pol->gateway.socket;
	if (!sg_privs_plan(pol, user, &privs))
		goto fail;
	/* What the user will need, checked as that user before anything
	 * listens. */
	ok = sg_privs_assume(&privs) && sg_privs_check_files(pol, &privs);
	if (!sg_privs_restore(&privs) || !ok || !block_signals() ||
	    !open_socket(&privs, sock))
		goto fail;
	if (!sg_privs_drop(&privs) || !sg_init_libraries()) {
		remove_socket(sock);
		goto fail;
	}
	/* As the user the milter runs as: the homes are that user's. */
	swept = sg_openpgp_sweep_homes();
	if (swept > 0)
		sg_log(SG_LOG_WARNING, NULL, "removed %u throwaway GnuPG home(s) "
		    "left in %s by a process that died", swept, g_get_tmp_dir());
	/* The metrics before the reload thread: it counts reloads, and
	 * nothing else may run while the endpoint starts. */
	if (!sg_keysnap_start(pol) ||
	    !sg_metrics_start(pol->gateway.metrics, metrics_gauges) ||
	    !start_reload_thread()) {
		remove_socket(sock);
		goto fail;
	}
	no_delay_on_listeners();
	if (privs.uid == 0)
		sg_log(SG_LOG_WARNING, NULL, "handling mail as root: set "
		    "gateway.user to the keystore's owner");
	sg_log(SG_LOG_INFO, NULL, "listening on %s, policy %s, user %s, "
	    "group %s", sock, policy_path, privs.user, privs.group);
	if (pol->gateway.metrics != NULL)
		sg_log(SG_LOG_INFO, NULL, "metrics at http://%s/metrics",
		    pol->gateway.metrics);
	sg_privs_clear(&privs);
	rc = smfi_main();
	sg_metrics_stop();
	sg_log(SG_LOG_INFO, NULL, "stopped");
	sg_policy_unref(pol);
	return rc == MI_SUCCESS ? 0 : SG_EXIT_USAGE;
fail:
	sg_privs_clear(&privs);
	sg_policy_unref(pol);
	return SG_EXIT_USAGE;
}
