/* Values of the policy: typed values parsed from the file's text (sizes,
 * durations, domains, globs, networks), and the questions the pipeline
 * asks of a loaded policy (internal domains, methods, networks). */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libpsl.h>

#include "policy_int.h"

/* Parses "123", "10K", "50M", "1G" into bytes. */
int
sg_policy_parse_size(const char *s, long long *out)
{
	char *end;
	long long v, mult = 1;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	switch (*end) {
	case 'k': case 'K':	mult = 1024LL; end++; break;
	case 'm': case 'M':	mult = 1024LL * 1024; end++; break;
	case 'g': case 'G':	mult = 1024LL * 1024 * 1024; end++; break;
	default:		break;
	}
	if (*end != '\0' || v > LLONG_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

/* Parses "90", "90s", "30m", "1h", "2d" into seconds, at most
 * SG_DURATION_MAX. */
#define SG_DURATION_MAX (366LL * 86400)

int
sg_policy_parse_duration(const char *s, long long *out)
{
	char *end;
	long long v, mult = 1;

	errno = 0;
	if (!g_ascii_isdigit(*s))
		return -1;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	switch (*end) {
	case 's':	end++; break;
	case 'm':	mult = 60; end++; break;
	case 'h':	mult = 3600; end++; break;
	case 'd':	mult = 86400; end++; break;
	default:	break;
	}
	if (*end != '\0' || v > SG_DURATION_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

int
sg_policy_parse_mode(const char *s, int *out)
{
	size_t len = strlen(s);
	int mode = 0;

	if (len < 3 || len > 4)
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '7')
			return -1;
		mode = mode * 8 + (*p - '0');
	}
	*out = mode;
	return 0;
}

/* getpwnam_r and getgrnam_r: the buffer grows until the entry fits (a
 * group lists its members: it may need a large one). */
#define ENTRY_MAX (1024 * 1024)

bool
sg_policy_lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd pw, *found = NULL;
	char *buf = NULL;
	size_t len = 4096;
	int rc;

	do {
		buf = g_realloc(buf, len);
		rc = getpwnam_r(name, &pw, buf, len, &found);
		len *= 2;
	} while (rc == ERANGE && len <= ENTRY_MAX);
	if (rc == 0 && found != NULL && uid != NULL)
		*uid = pw.pw_uid;
	if (rc == 0 && found != NULL && gid != NULL)
		*gid = pw.pw_gid;
	g_free(buf);
	return rc == 0 && found != NULL;
}

bool
sg_policy_lookup_group(const char *name, gid_t *gid)
{
	struct group gr, *found = NULL;
	char *buf = NULL;
	size_t len = 4096;
	int rc;

	do {
		buf = g_realloc(buf, len);
		rc = getgrnam_r(name, &gr, buf, len, &found);
		len *= 2;
	} while (rc == ERANGE && len <= ENTRY_MAX);
	if (rc == 0 && found != NULL && gid != NULL)
		*gid = gr.gr_gid;
	g_free(buf);
	return rc == 0 && found != NULL;
}

static bool
valid_domain(const char *d)
{
	if (*d == '\0' || strlen(d) > 253)
		return false;
	for (const char *p = d; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
			return false;
	return d[0] != '.' && d[strlen(d) - 1] != '.' && strstr(d, "..") == NULL;
}

/* A domain of the policy in the form envelope domains are compared in
 * (sealgate/addr.h): lower case, A-labels; ".example.com" (the
 * subdomains) keeps its dot. NULL when invalid, and for a subdomain
 * pattern of fewer than two labels (".com" would be every domain under a
 * top-level domain). */
static gpointer
load_psl(gpointer unused)
{
	(void)unused;
	return psl_latest(NULL);
}

char *
sg_policy_domain_item(const char *text)
{
	const bool subdomains = text[0] == '.';
	const char *name = subdomains ? text + 1 : text;
	char *ascii = g_str_is_ascii(name) ? g_strdup(name)
	    : g_hostname_to_ascii(name);
	char *lower = ascii != NULL ? g_ascii_strdown(ascii, -1) : NULL, *item;

	g_free(ascii);
	if (lower == NULL || !valid_domain(lower) ||
	    (subdomains && strchr(lower, '.') == NULL)) {
		g_free(lower);
		return NULL;
	}
	if (!subdomains)
		return lower;
	item = g_strconcat(".", lower, NULL);
	g_free(lower);
	return item;
}

bool
sg_policy_public_suffix(const char *item)
{
	static GOnce once = G_ONCE_INIT;
	const psl_ctx_t *psl;

	/* Loaded once; psl_latest falls back to the built-in list. */
	psl = g_once(&once, load_psl, NULL);
	if (psl == NULL)
		psl = psl_builtin();
	if (psl == NULL)
		return false;
	if (item[0] == '.')
		return psl_is_public_suffix2(psl, item + 1, PSL_TYPE_ANY) != 0;
	return psl_is_public_suffix2(psl, item, PSL_TYPE_ICANN) != 0;
}

bool
sg_policy_domain_matches(const char *item, const char *domain)
{
	size_t n = strlen(item), d = strlen(domain);

	if (item[0] != '.')
		return g_ascii_strcasecmp(domain, item) == 0;
	return d > n && g_ascii_strcasecmp(domain + d - n, item) == 0;
}

/* An address or domain glob with its domain labels as A-labels and
 * without a trailing dot, so that it matches canonical addresses; NULL
 * when a label cannot be converted or something is empty. */
char *
sg_policy_glob_item(const char *text)
{
	const char *at = strrchr(text, '@');
	const char *dom = at != NULL ? at + 1 : text;
	GString *out = g_string_new_len(text, (gssize)(dom - text));
	char *d = g_strdup(dom), **labels;
	size_t len = strlen(d);
	bool ok = len > 0 && g_utf8_validate(text, -1, NULL);

	if (len > 1 && d[len - 1] == '.')
		d[len - 1] = '\0';
	labels = g_strsplit(d, ".", -1);
	for (char **l = labels; ok && *l != NULL; l++) {
		char *a = g_str_is_ascii(*l) ? g_strdup(*l) : g_hostname_to_ascii(*l);

		ok = a != NULL && *a != '\0' && strchr(a, '.') == NULL;
		if (ok)
			g_string_append_printf(out, "%s%s", l == labels ? "" : ".", a);
		g_free(a);
	}
	g_strfreev(labels);
	g_free(d);
	d = ok ? g_ascii_strdown(out->str, -1) : NULL;
	g_string_free(out, TRUE);
	return d;
}

/* "10.0.0.0/8", "2001:db8::/32" or a single address. */
bool
sg_policy_parse_cidr(const char *text, struct sg_cidr *out)
{
	char *addr = g_strdup(text), *slash = strchr(addr, '/'), *end;
	unsigned max;
	long prefix;
	bool ok = false;

	if (slash != NULL)
		*slash = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		goto out;
	}
	out->prefix = max;
	if (slash != NULL) {
		errno = 0;
		prefix = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno || prefix < 0 ||
		    prefix > (long)max)
			goto out;
		out->prefix = (unsigned)prefix;
	}
	ok = true;
out:
	g_free(addr);
	return ok;
}

bool
sg_policy_parse_listen(const char *text, struct sockaddr_storage *ss,
		       socklen_t *len)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	const char *colon, *close;
	char host[INET6_ADDRSTRLEN], *end;
	bool v6 = text[0] == '[';
	size_t hlen;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (v6) {
		close = strchr(text, ']');
		if (close == NULL || close[1] != ':')
			return false;
		colon = close + 1;
		text++;
		hlen = (size_t)(close - text);
	} else {
		colon = strchr(text, ':');
		if (colon == NULL || strchr(colon + 1, ':') != NULL)
			return false;
		hlen = (size_t)(colon - text);
	}
	if (hlen == 0 || hlen >= sizeof(host) || !g_ascii_isdigit(colon[1]))
		return false;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || errno != 0 || port < 1 || port > 65535)
		return false;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (!v6 && inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*len = sizeof(*in);
		return true;
	}
	if (v6 && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return true;
	}
	return false;
}

bool
sg_policy_is_internal(const struct sg_policy *pol, const char *addr)
{
	const char *domain = strrchr(addr, '@');

	if (domain == NULL)
		return false;
	domain++;
	for (guint i = 0; i < pol->internal_domains->len; i++)
		if (sg_policy_domain_matches(
		    g_ptr_array_index(pol->internal_domains, i), domain))
			return true;
	return false;
}

bool
sg_policy_allows_method(const struct sg_methods *m, enum sg_method method)
{
	for (unsigned i = 0; i < m->n; i++)
		if (m->v[i] == (int)method)
			return true;
	return false;
}

static bool
cidr_contains(const struct sg_cidr *c, int family, const unsigned char *addr)
{
	unsigned full = c->prefix / 8, rest = c->prefix % 8;

	if (c->family != family)
		return false;
	if (memcmp(c->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest))) == 0;
}

bool
sg_policy_ip_in(const GArray *nets, const char *ip)
{
	unsigned char addr[16];
	int family;

	if (ip == NULL)
		return false;
	if (inet_pton(AF_INET, ip, addr) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, ip, addr) == 1) {
		family = AF_INET6;
		/* An IPv4-mapped address is judged as IPv4. */
		if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)(void *)addr)) {
			memmove(addr, addr + 12, 4);
			family = AF_INET;
		}
	} else {
		return false;
	}
	for (guint i = 0; i < nets->len; i++)
		if (cidr_contains(&g_array_index(nets, struct sg_cidr, i), family,
		    addr))
			return true;
	return false;
}

bool
sg_policy_trusted_ip(const struct sg_policy *pol, const char *ip)
{
	return sg_policy_ip_in(pol->gateway.trusted_networks, ip);
}
