/* Canonical envelope addresses; see include/sealgate/addr.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

#include <glib.h>

#include "sealgate/addr.h"

/* RFC 5322 atext, plus UTF-8 (RFC 6531) once the whole input validated. */
static bool
is_atext(unsigned char c)
{
	return g_ascii_isalnum(c) || c >= 0x80 ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
is_dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.' ? s[i + 1] == '.' : !is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* The path inside "<...>" (or the bare first token) of an MTA argument;
 * what follows it (ESMTP parameters) is ignored. */
static int
path_of(const char *arg, char **out, struct sg_err *err)
{
	const char *p = arg, *start;
	bool quoted = false, angle;

	while (*p == ' ' || *p == '\t')
		p++;
	angle = *p == '<';
	start = p += angle;
	for (; *p; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && (angle ? *p == '>' || *p == '<'
		    : *p == ' ' || *p == '\t'))
			break;
	}
	if (quoted)
		return sg_err_set(err, SG_EINVAL, "unbalanced quotes");
	if (angle && *p != '>')
		return sg_err_set(err, SG_EINVAL, "unbalanced angle brackets");
	if (angle && p[1] != '\0' && p[1] != ' ' && p[1] != '\t')
		return sg_err_set(err, SG_EINVAL, "text after the closing '>'");
	*out = g_strndup(start, (gsize)(p - start));
	return SG_OK;
}

/* Skips a source route "@a.example,@b.example:"; *p is left on the
 * mailbox. Route domains only need to look like domains: they are dropped. */
static int
skip_route(const char **p, struct sg_err *err)
{
	const char *s = *p, *colon;

	if (*s != '@')
		return SG_OK;
	colon = strchr(s, ':');
	if (colon == NULL)
		return sg_err_set(err, SG_EINVAL, "empty local part");
	for (const char *q = s; q < colon; q++) {
		bool start = q == s || q[-1] == ',';

		if (start ? *q != '@' || q + 1 == colon || q[1] == ','
		    : !(g_ascii_isalnum(*q) || strchr("-._[]:,", *q) != NULL))
			return sg_err_set(err, SG_EINVAL, "malformed source route");
	}
	*p = colon + 1;
	return SG_OK;
}

/* The content of the local part at *p (quoted string or dot-atom-like
 * text), unescaped; *p is left on the '@'. */
static int
local_content(const char **p, GString *out, struct sg_err *err)
{
	const char *s = *p;
	unsigned char c;

	if (*s != '"') {
		for (; (c = (unsigned char)*s) != '\0' && c != '@'; s++) {
			if (!is_atext(c) && c != '.')
				return sg_err_set(err, SG_EINVAL, "character 0x%02x "
				    "not allowed in an unquoted local part", c);
			g_string_append_c(out, (char)c);
		}
		*p = s;
		return SG_OK;
	}
	for (s++; (c = (unsigned char)*s) != '"'; s++) {
		if (c == '\\')
			c = (unsigned char)*++s;
		if (c == '\0')
			return sg_err_set(err, SG_EINVAL, "unbalanced quotes");
		if (c < 0x20 || c == 0x7f)
			return sg_err_set(err, SG_EINVAL, "control character in "
			    "the local part");
		g_string_append_c(out, (char)c);
	}
	*p = s + 1;
	return SG_OK;
}

/* The local part in its one form: bare when a dot-atom, else quoted. */
static void
local_canon(const GString *content, GString *out)
{
	if (is_dot_atom(content->str, content->len)) {
		g_string_append_len(out, content->str, (gssize)content->len);
		return;
	}
	g_string_append_c(out, '"');
	for (gsize i = 0; i < content->len; i++) {
		if (content->str[i] == '"' || content->str[i] == '\\')
			g_string_append_c(out, '\\');
		g_string_append_c(out, content->str[i]);
	}
	g_string_append_c(out, '"');
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]" in normal text form. */
static int
literal_canon(const char *d, GString *out, struct sg_err *err)
{
	size_t len = strlen(d);
	unsigned char bin[16];
	char text[INET6_ADDRSTRLEN], *inner;
	bool v6 = g_ascii_strncasecmp(d, "[IPv6:", 6) == 0;
	int rc = SG_OK;

	if (len < 3 || d[len - 1] != ']')
		return sg_err_set(err, SG_EINVAL, "malformed address literal");
	inner = g_strndup(d + (v6 ? 6 : 1), len - (v6 ? 7 : 2));
	if (inet_pton(v6 ? AF_INET6 : AF_INET, inner, bin) != 1 ||
	    inet_ntop(v6 ? AF_INET6 : AF_INET, bin, text, sizeof(text)) == NULL)
		rc = sg_err_set(err, SG_EINVAL, "malformed address literal");
	else
		g_string_append_printf(out, "[%s%s]", v6 ? "IPv6:" : "", text);
	g_free(inner);
	return rc;
}

/* Letters, digits, '-' and '_'; labels of 1-63, no '-' at either end. */
static bool
ascii_domain_ok(const char *d)
{
	size_t len = strlen(d), label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (d[i] == '.' || d[i] == '\0') {
			if (label == 0 || label > 63 || d[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(g_ascii_isalnum(d[i]) || d[i] == '_' ||
		    (d[i] == '-' && label > 0)))
			return false;
		label++;
	}
	return true;
}

/* A-labels must decode and encode back to themselves. */
static bool
alabels_ok(const char *d)
{
	char *u, *a;
	bool ok;

	if (strstr(d, "xn--") == NULL)
		return true;
	u = g_hostname_to_unicode(d);
	a = u != NULL ? g_hostname_to_ascii(u) : NULL;
	ok = a != NULL && g_ascii_strcasecmp(a, d) == 0;
	g_free(u);
	g_free(a);
	return ok;
}

static int
domain_canon(const char *d, GString *out, struct sg_err *err)
{
	char *ascii, *lower;
	size_t len;
	int rc = SG_OK;

	if (*d == '[')
		return literal_canon(d, out, err);
	ascii = g_str_is_ascii(d) ? g_strdup(d) : g_hostname_to_ascii(d);
	if (ascii == NULL)
		return sg_err_set(err, SG_EINVAL, "invalid international "
		    "domain name");
	len = strlen(ascii);
	if (len > 0 && ascii[len - 1] == '.')
		ascii[len - 1] = '\0';
	lower = g_ascii_strdown(ascii, -1);
	if (!ascii_domain_ok(lower))
		rc = sg_err_set(err, SG_EINVAL, "invalid domain");
	else if (!alabels_ok(lower))
		rc = sg_err_set(err, SG_EINVAL, "invalid A-label in the domain");
	else
		g_string_append(out, lower);
	g_free(lower);
	g_free(ascii);
	return rc;
}

/* Controls (C0, DEL, C1), format characters (bidi overrides, ...) and
 * line separators have no place in an address. */
static bool
has_controls(const char *s)
{
	for (; *s; s = g_utf8_next_char(s)) {
		gunichar c = g_utf8_get_char(s);
		GUnicodeType t = g_unichar_type(c);

		if (t == G_UNICODE_CONTROL || t == G_UNICODE_FORMAT ||
		    t == G_UNICODE_LINE_SEPARATOR ||
		    t == G_UNICODE_PARAGRAPH_SEPARATOR)
			return true;
	}
	return false;
}

/* Canonical form of a path without brackets. */
static int
mailbox_canon(const char *path, GString *out, struct sg_err *err)
{
	GString *content = g_string_new(NULL);
	const char *p = path;
	int rc = SG_OK;

	if (has_controls(path))
		rc = sg_err_set(err, SG_EINVAL, "control character");
	if (rc == 0)
		rc = skip_route(&p, err);
	if (rc == 0)
		rc = local_content(&p, content, err);
	if (rc == 0 && content->len == 0)
		rc = sg_err_set(err, SG_EINVAL, "empty local part");
	if (rc == 0 && *p != '@')
		rc = sg_err_set(err, SG_EINVAL, "no domain");
	if (rc == 0 && strchr(p + 1, '@') != NULL)
		rc = sg_err_set(err, SG_EINVAL, "more than one '@'");
	if (rc == 0) {
		local_canon(content, out);
		g_string_append_c(out, '@');
		rc = domain_canon(p + 1, out, err);
	}
	g_string_free(content, TRUE);
	return rc;
}

int
sg_addr_canon(const char *arg, char **out, struct sg_err *err)
{
	GString *canon = g_string_new(NULL);
	char *path = NULL;
	int rc;

	if (strlen(arg) > SG_ADDR_ARG_MAX) {
		rc = sg_err_set(err, SG_EINVAL, "address too long");
		goto out;
	}
	if (!g_utf8_validate(arg, -1, NULL)) {
		rc = sg_err_set(err, SG_EINVAL, "not valid UTF-8");
		goto out;
	}
	rc = path_of(arg, &path, err);
	if (rc == 0 && *path != '\0')
		rc = mailbox_canon(path, canon, err);
	if (rc == 0 && canon->len > SG_ADDR_MAX)
		rc = sg_err_set(err, SG_EINVAL, "address too long");
	if (rc == 0)
		*out = g_string_free(g_steal_pointer(&canon), FALSE);
out:
	g_free(path);
	if (canon != NULL)
		g_string_free(canon, TRUE);
	return rc;
}

int
sg_addr_canon_rcpt(const char *arg, char **out, struct sg_err *err)
{
	const char *at;
	char *addr = NULL;
	int rc;

	rc = sg_addr_canon(arg, &addr, err);
	if (rc == 0 && *addr == '\0')
		rc = sg_err_set(err, SG_EINVAL, "empty address");
	at = rc == 0 ? strrchr(addr, '@') : NULL;
	for (const char *p = addr; rc == 0 && at != NULL && p < at; p++)
		if (*p == '%' || *p == '!' || *p == '@')
			rc = sg_err_set(err, SG_EINVAL, "the local part holds a "
			    "routing character (percent sign, exclamation mark "
			    "or at sign) the MTA may send elsewhere");
	if (rc == 0)
		*out = addr;
	else
		g_free(addr);
	return rc;
}

char *
sg_addr_key(const char *addr)
{
	struct sg_err err = { 0 };
	char *canon = NULL, *key;

	if (sg_addr_canon(addr, &canon, &err) < 0 || *canon == '\0') {
		g_free(canon);
		return NULL;
	}
	/* Keys were always matched regardless of letter case. */
	key = g_ascii_strdown(canon, -1);
	g_free(canon);
	return key;
}
