/* The sender-login map and the signing rule; see include/sealgate/logins.h
 * and sg_policy_may_sign in include/sealgate/policy.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sealgate/addr.h"
#include "sealgate/logins.h"
#include "sealgate/policy.h"

struct sg_logins {
	GHashTable *owners;     /* lower-case key -> GPtrArray of logins */
	GHashTable *lines;      /* lower-case key -> line number */
};

/* The file being read. */
struct reader {
	const char *path;
	GPtrArray *errors;
	struct sg_logins *l;
	unsigned line;
	GPtrArray *current;     /* the logins of the last entry, for continuations */
	unsigned words;         /* login words of the current entry */
	unsigned key_line;      /* where its key is */
	size_t key_end;
	char *key_text;
};

static void
problem(struct reader *r, size_t col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
problem(struct reader *r, size_t col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sg_config_problemv(r->errors, r->path, r->line, col, fmt, ap);
	va_end(ap);
}

char *
sg_login_canon(const char *login)
{
	char *canon = NULL, *lower;

	if (login == NULL || *login == '\0' || !g_utf8_validate(login, -1, NULL))
		return NULL;
	/* Nothing sg_addr_canon would read as brackets, quotes or ESMTP
	 * parameters around an address: a login is one word. */
	for (const char *p = login; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == ',' ||
		    strchr("<>\"", *p) != NULL)
			return NULL;
	if (strchr(login, '@') != NULL) {
		if (sg_addr_canon(login, &canon, NULL) < 0 || *canon == '\0') {
			g_free(canon);
			return NULL;
		}
		lower = g_ascii_strdown(canon, -1);
		g_free(canon);
		return lower;
	}
	return g_ascii_strdown(login, -1);
}

/* The key of a line in canonical, lower-case form: an address or
 * "@domain". NULL (after reporting) when it is neither. */
static char *
entry_key(struct reader *r, const char *text)
{
	struct sg_err err = { 0 };
	char *canon = NULL, *probe, *key = NULL;
	bool domain = text[0] == '@';

	probe = domain ? g_strconcat("x", text, NULL) : g_strdup(text);
	if (strchr(text, '@') == NULL)
		problem(r, 1, "\"%s\": expected an address or @domain", text);
	else if (sg_addr_canon(probe, &canon, &err) < 0 || *canon == '\0')
		problem(r, 1, "invalid %s \"%s\": %s", domain ? "domain" :
		    "address", text, *err.msg ? err.msg : "empty address");
	else
		key = g_ascii_strdown(domain ? strrchr(canon, '@') : canon, -1);
	g_free(canon);
	g_free(probe);
	return key;
}

/* Adds the logins in text (column col on) to r->current; returns how
 * many words there were, valid or not. */
static unsigned
add_logins(struct reader *r, const char *text, size_t col)
{
	const char *p = text;
	unsigned words = 0;

	while (*p) {
		size_t n = strcspn(p, ", \t");
		char *word, *login;

		if (n == 0) {
			p++;
			continue;
		}
		word = g_strndup(p, n);
		words++;
		login = sg_login_canon(word);
		if (login == NULL)
			problem(r, col + (size_t)(p - text), "invalid login \"%s\"",
			    word);
		else
			g_ptr_array_add(r->current, login);
		g_free(word);
		p += n;
	}
	return words;
}

/* Ends the current entry: it needs at least one login, on its own line
 * or on continuation lines. */
static void
entry_end(struct reader *r)
{
	unsigned line = r->line;

	if (r->current != NULL && r->words == 0) {
		r->line = r->key_line;
		problem(r, r->key_end + 1, "no logins for \"%s\"", r->key_text);
		r->line = line;
	}
	r->current = NULL;
	g_free(r->key_text);
	r->key_text = NULL;
}

/* A line that starts a new entry: KEY LOGINS... */
static void
entry_line(struct reader *r, const char *line)
{
	size_t klen = strcspn(line, " \t");
	char *text = g_strndup(line, klen), *key;
	gpointer first;

	entry_end(r);
	key = entry_key(r, text);
	if (key == NULL)
		goto out;
	if (g_hash_table_lookup_extended(r->l->lines, key, NULL, &first)) {
		problem(r, 1, "duplicate entry for \"%s\" (first on line %u)", text,
		    GPOINTER_TO_UINT(first));
		g_free(key);
		goto out;
	}
	r->current = g_ptr_array_new_with_free_func(g_free);
	r->key_line = r->line;
	r->key_end = klen;
	r->key_text = g_strdup(text);
	g_hash_table_insert(r->l->lines, g_strdup(key), GUINT_TO_POINTER(r->line));
	g_hash_table_insert(r->l->owners, key, r->current);
	r->words = add_logins(r, line + klen, klen + 1);
out:
	g_free(text);
}

static void
read_line(struct reader *r, const char *line, size_t len)
{
	const char *p = line;

	if (len > SG_LOGINS_MAX_LINE) {
		problem(r, SG_LOGINS_MAX_LINE + 1, "line longer than %d bytes",
		    SG_LOGINS_MAX_LINE);
		entry_end(r);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		if (((unsigned char)line[i] < 0x20 && line[i] != '\t') ||
		    line[i] == 0x7f) {
			problem(r, i + 1, "control character 0x%02x",
			    (unsigned char)line[i]);
			return;
		}
	}
	if (!g_utf8_validate(line, (gssize)len, NULL)) {
		problem(r, 1, "not valid UTF-8");
		return;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0' || *p == '#')
		return;
	if (p == line)
		entry_line(r, line);
	else if (r->current != NULL)
		r->words += add_logins(r, p, (size_t)(p - line) + 1);
	else
		problem(r, 1, "continuation line without an entry before it");
}

/* The file's contents, bounded; SG_EIO with err on failure. */
static int
read_file(const char *path, char **out, size_t *len, struct sg_err *err)
{
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int rc = SG_OK;

	if (fd < 0)
		return sg_err_set(err, SG_EIO, "cannot open %s: %s", path,
		    strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		rc = sg_err_set(err, SG_EIO, "%s is not a regular file", path);
	else if (st.st_size > SG_LOGINS_MAX_FILE)
		rc = sg_err_set(err, SG_EIO, "%s is larger than %d bytes", path,
		    SG_LOGINS_MAX_FILE);
	if (rc == 0) {
		*out = g_malloc((gsize)st.st_size + 1);
		n = read(fd, *out, (size_t)st.st_size);
		if (n < 0 || n != st.st_size) {
			rc = sg_err_set(err, SG_EIO, "cannot read %s: %s", path,
			    n < 0 ? strerror(errno) : "short read");
			g_free(*out);
		} else {
			(*out)[n] = '\0';
			*len = (size_t)n;
		}
	}
	close(fd);
	return rc;
}

static void
free_array(gpointer p)
{
	g_ptr_array_free(p, TRUE);
}

int
sg_logins_load(const char *path, GPtrArray *errors, struct sg_err *err,
	       struct sg_logins **out)
{
	struct reader r = { .path = path, .errors = errors };
	guint nerr = errors->len;
	char *data = NULL;
	size_t len = 0, off, end;
	int rc;

	rc = read_file(path, &data, &len, err);
	if (rc < 0)
		return rc;
	r.l = g_new0(struct sg_logins, 1);
	r.l->owners = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	    free_array);
	r.l->lines = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	for (off = 0; off < len; off = end + 1) {
		const char *nl = memchr(data + off, '\n', len - off);
		size_t n;

		end = nl != NULL ? (size_t)(nl - data) : len;
		n = end - off;
		r.line++;
		if (n > 0 && data[end - 1] == '\r')
			n--;
		data[off + n] = '\0';
		read_line(&r, data + off, n);
	}
	entry_end(&r);
	g_free(data);
	if (errors->len > nerr) {
		sg_logins_free(r.l);
		return SG_ECONFIG;
	}
	*out = r.l;
	return SG_OK;
}

void
sg_logins_free(struct sg_logins *l)
{
	if (l == NULL)
		return;
	g_hash_table_destroy(l->owners);
	g_hash_table_destroy(l->lines);
	g_free(l);
}

const GPtrArray *
sg_logins_owners(const struct sg_logins *l, const char *addr, const char **key)
{
	char *lower = g_ascii_strdown(addr, -1);
	const char *at = strrchr(lower, '@');
	gpointer k = NULL, v = NULL;

	if (!g_hash_table_lookup_extended(l->owners, lower, &k, &v) && at != NULL)
		g_hash_table_lookup_extended(l->owners, at, &k, &v);
	g_free(lower);
	if (key != NULL)
		*key = k;
	return v;
}

static bool
listed(const GPtrArray *logins, const char *login)
{
	for (guint i = 0; i < logins->len; i++)
		if (strcmp(g_ptr_array_index(logins, i), login) == 0)
			return true;
	return false;
}

/* Without a map: the login is the address or its local part. */
static bool
owns_by_name(const char *sender, const char *login)
{
	char *lower = g_ascii_strdown(sender, -1);
	char *at = strrchr(lower, '@');
	bool owns = strcmp(lower, login) == 0 ||
	    (at != NULL && (size_t)(at - lower) == strlen(login) &&
	    strncmp(lower, login, strlen(login)) == 0);

	g_free(lower);
	return owns;
}

bool
sg_policy_may_sign(const struct sg_policy *pol, const char *sender,
		   const char *login, const char *client_ip, char *why,
		   size_t len)
{
	const GPtrArray *owners;
	char *who;
	bool ok;

	if (*sender == '\0') {
		snprintf(why, len, "null sender");
		return false;
	}
	if (login == NULL) {
		ok = sg_policy_ip_in(pol->gateway.signing_networks, client_ip);
		if (!ok)
			snprintf(why, len, "client %s is not authenticated (SMTP AUTH) "
			    "and not in gateway.signing_networks",
			    client_ip != NULL ? client_ip : "(unknown)");
		return ok;
	}
	who = sg_login_canon(login);
	if (who == NULL) {
		snprintf(why, len, "the SMTP AUTH login is not usable");
		return false;
	}
	if (pol->logins == NULL) {
		ok = owns_by_name(sender, who);
		if (!ok)
			snprintf(why, len, "login \"%s\" is neither the address "
			    "nor its local part", who);
	} else if ((owners = sg_logins_owners(pol->logins, sender, NULL)) == NULL) {
		ok = false;
		snprintf(why, len, "gateway.sender_logins names no owner of the "
		    "address");
	} else {
		ok = listed(owners, who);
		if (!ok)
			snprintf(why, len, "login \"%s\" does not own the address "
			    "in gateway.sender_logins", who);
	}
	g_free(who);
	return ok;
}
