/* Privileges of `sealgate milter` (README, "Privileges"): the user and
 * groups it runs as, the owner and permissions of its unix socket, and no
 * core dumps. Started as root, it checks as that user (effective ids only,
 * root kept in the saved set) that the user can use its files, opens the
 * socket as root, and then becomes the user for good before it reads a
 * message. */
#define _GNU_SOURCE /* getresuid, getgrouplist */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <glib.h>

#include "sealgate/spool.h"
#include "sealgate.h"

/* getgrgid_r: the buffer grows until the entry (with its members) fits. */
#define ENTRY_MAX (1024 * 1024)

/* The name of a user or group, or its number. (transfer full) */
static char *
user_name(uid_t uid)
{
	struct passwd pw, *found = NULL;
	char buf[4096];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
		return g_strdup(pw.pw_name);
	return g_strdup_printf("%u", (unsigned)uid);
}

static char *
group_name(gid_t gid)
{
	struct group gr, *found = NULL;
	char *buf = NULL, *name;
	size_t len = 4096;
	int rc;

	do {
		buf = g_realloc(buf, len);
		rc = getgrgid_r(gid, &gr, buf, len, &found);
		len *= 2;
	} while (rc == ERANGE && len <= ENTRY_MAX);
	name = rc == 0 && found != NULL ? g_strdup(gr.gr_name)
	    : g_strdup_printf("%u", (unsigned)gid);
	g_free(buf);
	return name;
}

bool
sg_privs_no_core_dumps(void)
{
	struct rlimit none = { 0, 0 };

	/* Hard limit too: the daemon cannot raise it again. Not dumpable
	 * also keeps other processes of the user from reading its memory
	 * through ptrace or /proc/PID/mem. */
	if (setrlimit(RLIMIT_CORE, &none) < 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		fprintf(stderr, "sealgate: cannot turn off core dumps: %s\n",
		    strerror(errno));
		return false;
	}
	return true;
}

/* The supplementary groups the user gets (initgroups' list). */
static bool
group_list(struct sg_privs *p)
{
	int n = 16;

	for (;;) {
		int want = n;

		p->groups = g_renew(gid_t, p->groups, n);
		if (getgrouplist(p->user, p->gid, p->groups, &want) >= 0) {
			p->ngroups = want;
			return true;
		}
		if (want <= n || want > 65536)
			return false;
		n = want;
	}
}

bool
sg_privs_plan(const struct sg_policy *pol, const char *user_opt,
	      struct sg_privs *out)
{
	const char *user = user_opt != NULL ? user_opt : pol->gateway.user;
	const char *group = pol->gateway.group;
	bool root = geteuid() == 0;
	char *me;

	memset(out, 0, sizeof(*out));
	out->socket_mode = pol->gateway.socket_mode;
	out->socket_gid = (gid_t)-1;
	out->uid = geteuid();
	out->gid = getegid();
	if (user == NULL && root) {
		fprintf(stderr, "sealgate: started as root without gateway.user: "
		    "name the user the milter runs as (the keystore's owner, "
		    "e.g. sealgate) in gateway.user, or start it with -u root to "
		    "handle mail as root (not recommended)\n");
		return false;
	}
	if (user != NULL && !sg_policy_lookup_user(user, &out->uid, &out->gid)) {
		sg_tprintf(stderr, "sealgate: %s: unknown user \"%s\"\n",
		    user_opt != NULL ? "-u" : "gateway.user", user);
		return false;
	}
	if (group != NULL && !sg_policy_lookup_group(group, &out->gid)) {
		sg_tprintf(stderr, "sealgate: gateway.group: unknown group \"%s\"\n",
		    group);
		return false;
	}
	out->user = user != NULL ? g_strdup(user) : user_name(out->uid);
	out->group = group_name(out->gid);
	if (!root && (out->uid != geteuid() || out->gid != getegid())) {
		me = user_name(geteuid());
		sg_tprintf(stderr, "sealgate: cannot run as user %s, group %s: "
		    "started as user %s, not as root\n", out->user, out->group, me);
		g_free(me);
		return false;
	}
	out->change = root;
	if (root && !group_list(out)) {
		sg_tprintf(stderr, "sealgate: cannot list the groups of user %s\n",
		    out->user);
		return false;
	}
	if (pol->gateway.socket_group != NULL &&
	    !sg_policy_lookup_group(pol->gateway.socket_group,
	    &out->socket_gid)) {
		sg_tprintf(stderr, "sealgate: gateway.socket_group: unknown group "
		    "\"%s\"\n", pol->gateway.socket_group);
		return false;
	}
	/* Created by root, the socket is root's: it goes to the group the
	 * milter runs as unless another is named. */
	if (root && out->socket_gid == (gid_t)-1)
		out->socket_gid = out->gid;
	return true;
}

bool
sg_privs_assume(struct sg_privs *p)
{
	int n;

	if (!p->change)
		return true;
	n = getgroups(0, NULL);
	p->saved_groups = g_new(gid_t, n > 0 ? n : 1);
	p->nsaved = n > 0 ? getgroups(n, p->saved_groups) : 0;
	p->saved_egid = getegid();
	if (p->nsaved < 0 || setgroups((size_t)p->ngroups, p->groups) < 0 ||
	    setresgid((gid_t)-1, p->gid, (gid_t)-1) < 0 ||
	    setresuid((uid_t)-1, p->uid, (uid_t)-1) < 0) {
		sg_tprintf(stderr, "sealgate: cannot act as user %s: %s\n",
		    p->user, strerror(errno));
		return false;
	}
	return true;
}

bool
sg_privs_restore(struct sg_privs *p)
{
	bool ok;

	if (!p->change)
		return true;
	ok = setresuid((uid_t)-1, 0, (uid_t)-1) == 0 &&
	    setresgid((gid_t)-1, p->saved_egid, (gid_t)-1) == 0 &&
	    setgroups((size_t)p->nsaved, p->saved_groups) == 0;
	if (!ok)
		fprintf(stderr, "sealgate: cannot act as root again: %s\n",
		    strerror(errno));
	g_free(p->saved_groups);
	p->saved_groups = NULL;
	return ok;
}

/* A file can be created in the spool, as the spool creates them. */
static bool
spool_usable(const struct sg_policy *pol, const struct sg_privs *p)
{
	struct sg_spool *sp = NULL;
	int rc, saved;

	rc = sg_spool_new(pol->gateway.spool_dir, 0, &sp);
	if (rc == 0)
		rc = sg_spool_write(sp, "x", 1); /* over the bound: a file */
	saved = errno;
	sg_spool_free(sp);
	if (rc < 0)
		sg_tprintf(stderr, "sealgate: spool directory %s: user %s cannot "
		    "create files in it: %s\n", pol->gateway.spool_dir, p->user,
		    strerror(saved));
	return rc == 0;
}

/* The keystore is the user's: 0700, so nobody else could read it, and
 * gpg writes in it as whoever runs it. */
static bool
keystore_usable(const struct sg_policy *pol, const struct sg_privs *p)
{
	const char *dir = pol->gateway.keystore;
	struct sg_keystore *ks;
	struct stat st;
	char *owner;

	if (stat(dir, &st) == 0 && st.st_uid != p->uid) {
		owner = user_name(st.st_uid);
		sg_tprintf(stderr, "sealgate: keystore %s belongs to user %s, but "
		    "the milter runs as user %s: give it to that user (chown -R "
		    "%s: %s) or run the milter as its owner\n", dir, owner,
		    p->user, p->user, dir);
		g_free(owner);
		return false;
	}
	ks = sg_open_keystore_or_report(pol, 0);
	sg_keystore_free(ks);
	return ks != NULL;
}

bool
sg_privs_check_files(const struct sg_policy *pol, const struct sg_privs *p)
{
	GPtrArray *errors;
	struct sg_policy *again = NULL;
	bool ok = true;

	if (p->change) {
		/* SIGUSR1 reads it again, as this user. */
		errors = g_ptr_array_new_with_free_func(g_free);
		if (sg_policy_load(pol->path, errors, &again) < 0) {
			sg_tprintf(stderr, "sealgate: user %s cannot read the policy "
			    "(SIGUSR1 reads it again as that user):\n", p->user);
			for (guint i = 0; i < errors->len; i++)
				sg_tprintf(stderr, "%s\n",
				    (char *)g_ptr_array_index(errors, i));
			ok = false;
		}
		sg_policy_unref(again);
		g_ptr_array_free(errors, TRUE);
	}
	return ok && sg_ensure_spool_dir(pol) && spool_usable(pol, p) &&
	    keystore_usable(pol, p);
}

/* The file of a libmilter socket spec, read as libmilter reads it:
 * "unix:PATH", "local:PATH" (any letter case), ":PATH" or a bare path;
 * NULL for inet and inet6. */
const char *
sg_privs_socket_path(const char *spec)
{
	const char *colon = strchr(spec, ':');

	if (colon == NULL)
		return spec;
	if (colon == spec || (colon - spec == 4 &&
	    g_ascii_strncasecmp(spec, "unix", 4) == 0) || (colon - spec == 5 &&
	    g_ascii_strncasecmp(spec, "local", 5) == 0))
		return colon + 1;
	return NULL;
}

mode_t
sg_privs_socket_umask(const struct sg_privs *p)
{
	/* bind() creates the file 0777 & ~umask: exactly socket_mode. */
	return (mode_t)(0777 & ~p->socket_mode);
}

bool
sg_privs_socket(const struct sg_privs *p, const char *spec)
{
	const char *path = sg_privs_socket_path(spec);
	uid_t owner = p->change ? p->uid : (uid_t)-1;
	char *group;
	int saved;

	if (path == NULL)
		return true;
	/* lchown: a link put in its place is not followed. */
	if ((owner != (uid_t)-1 || p->socket_gid != (gid_t)-1) &&
	    lchown(path, owner, p->socket_gid) < 0) {
		saved = errno;
		group = group_name(p->socket_gid);
		sg_tprintf(stderr, "sealgate: cannot give socket %s to user %s, "
		    "group %s: %s%s\n", path, p->user, group, strerror(saved),
		    saved == EPERM && !p->change ? " (a milter not started as "
		    "root can only give it one of its own groups)" : "");
		g_free(group);
		return false;
	}
	/* An access ACL, inherited from a default ACL of the directory, can
	 * let other users in whatever the mode says. */
	if (lgetxattr(path, "system.posix_acl_access", NULL, 0) >= 0) {
		sg_tprintf(stderr, "sealgate: socket %s has an ACL, inherited from "
		    "a default ACL of its directory, that can let other users "
		    "connect: remove that default ACL (setfacl -k)\n", path);
		return false;
	}
	return true;
}

static bool
same_groups(const gid_t *a, int na, const gid_t *b, int nb)
{
	for (int i = 0; i < na; i++) {
		bool found = false;

		for (int j = 0; j < nb && !found; j++)
			found = a[i] == b[j];
		if (!found)
			return false;
	}
	return true;
}

/* Whether the process still holds any capability. */
static bool
holds_capabilities(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return true;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective || data[i].permitted || data[i].inheritable)
			return true;
	return false;
}

/* Checks that the process is the user, group and groups of p, and that a
 * process not running as root cannot become root again. */
static bool
verify(const struct sg_privs *p)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg, *groups;
	bool same;
	int n;

	if (getresuid(&ru, &eu, &su) < 0 || ru != p->uid || eu != p->uid ||
	    su != p->uid || getresgid(&rg, &eg, &sg) < 0 || rg != p->gid ||
	    eg != p->gid || sg != p->gid)
		return false;
	if (p->change) {
		n = getgroups(0, NULL);
		groups = g_new(gid_t, n > 0 ? n : 1);
		n = n > 0 ? getgroups(n, groups) : n;
		same = n >= 0 && same_groups(groups, n, p->groups, p->ngroups) &&
		    same_groups(p->groups, p->ngroups, groups, n);
		g_free(groups);
		if (!same)
			return false;
	}
	if (p->uid == 0)
		return true;
	if (setuid(0) == 0 || seteuid(0) == 0)
		return false;
	if (p->gid != 0 && (setgid(0) == 0 || setegid(0) == 0))
		return false;
	return !holds_capabilities();
}

bool
sg_privs_drop(const struct sg_privs *p)
{
	if (p->change && (initgroups(p->user, p->gid) < 0 ||
	    setresgid(p->gid, p->gid, p->gid) < 0 ||
	    setresuid(p->uid, p->uid, p->uid) < 0)) {
		sg_tprintf(stderr, "sealgate: cannot switch to user %s, group %s: "
		    "%s\n", p->user, p->group, strerror(errno));
		return false;
	}
	if (!verify(p)) {
		sg_tprintf(stderr, "sealgate: running as user %s, group %s did not "
		    "take: the process still has other ids, groups or "
		    "capabilities, or could become root again; refusing to "
		    "run\n", p->user, p->group);
		return false;
	}
	/* A change of ids resets the dumpable flag; no program it starts
	 * may gain privileges (set-user-ID files, file capabilities). */
	if (!sg_privs_no_core_dumps())
		return false;
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		fprintf(stderr, "sealgate: cannot restrict the process: %s\n",
		    strerror(errno));
		return false;
	}
	return true;
}

void
sg_privs_clear(struct sg_privs *p)
{
	g_free(p->user);
	g_free(p->group);
	g_free(p->groups);
	g_free(p->saved_groups);
	memset(p, 0, sizeof(*p));
}
