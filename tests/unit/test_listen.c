/* The address of the metrics endpoint (sg_policy_parse_listen, the value
 * of gateway.metrics): literal IPv4 or bracketed IPv6 address, ':', a
 * decimal port 1-65535, nothing else; every other form is refused rather
 * than guessed at. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "sealgate/policy.h"

struct good {
	const char *text;
	int family;
	const char *host;       /* as inet_ntop writes it */
	unsigned port;
};

static const struct good good[] = {
	{ "127.0.0.1:9108", AF_INET, "127.0.0.1", 9108 },
	{ "0.0.0.0:1", AF_INET, "0.0.0.0", 1 },
	{ "255.255.255.255:65535", AF_INET, "255.255.255.255", 65535 },
	{ "1.2.3.4:080", AF_INET, "1.2.3.4", 80 },   /* decimal, not octal */
	{ "[::1]:9108", AF_INET6, "::1", 9108 },
	{ "[::]:80", AF_INET6, "::", 80 },
	{ "[2001:db8::1]:443", AF_INET6, "2001:db8::1", 443 },
	{ "[::ffff:1.2.3.4]:80", AF_INET6, "::ffff:1.2.3.4", 80 },
};

static const char *const bad[] = {
	"",
	"[",
	"]",
	"[]",
	"[]:1",
	":80",
	"1.2.3.4",
	"1.2.3.4:",
	"1.2.3.4:+80",
	"1.2.3.4:-80",
	"1.2.3.4: 80",
	"1.2.3.4:80 ",
	"1.2.3.4:80\n",
	" 1.2.3.4:80",
	"1.2.3.4 :80",
	"1.2.3.4:0",
	"1.2.3.4:65536",
	"1.2.3.4:99999999999999999999999",
	"1.2.3.4:0x50",
	"1.2.3.4:80:81",
	"01.2.3.4:80",          /* a leading zero could be read as octal */
	"1.2.3:80",
	"1.2.3.4.5:80",
	"256.1.1.1:80",
	"localhost:80",         /* literal addresses only: nothing looked up */
	"::1:80",               /* IPv6 needs its brackets */
	"[::1]",
	"[::1]:",
	"[::1]80",
	"[::1]:80]",
	"[::1]x:80",
	"[[::1]]:80",
	"[1.2.3.4]:80",
	"[fe80::1%eth0]:80",    /* a zone would need an interface index */
	"[::1:80",
};

static void
test_good(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char host[INET6_ADDRSTRLEN];

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
		const struct good *g = &good[i];
		const void *addr;
		unsigned port;

		memset(&ss, 0xa5, sizeof(ss));
		len = 0;
		if (!sg_policy_parse_listen(g->text, &ss, &len))
			fail_msg("refused: \"%s\"", g->text);
		assert_int_equal(ss.ss_family, g->family);
		if (g->family == AF_INET) {
			const struct sockaddr_in *in = (const void *)&ss;

			assert_int_equal(len, sizeof(*in));
			addr = &in->sin_addr;
			port = ntohs(in->sin_port);
		} else {
			const struct sockaddr_in6 *in6 = (const void *)&ss;

			assert_int_equal(len, sizeof(*in6));
			assert_int_equal(in6->sin6_scope_id, 0);
			assert_int_equal(in6->sin6_flowinfo, 0);
			addr = &in6->sin6_addr;
			port = ntohs(in6->sin6_port);
		}
		assert_non_null(inet_ntop(g->family, addr, host, sizeof(host)));
		assert_string_equal(host, g->host);
		assert_int_equal(port, g->port);
	}
}

static void
test_bad(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		if (sg_policy_parse_listen(bad[i], &ss, &len))
			fail_msg("accepted: \"%s\"", bad[i]);
}

/* Long inputs: a host longer than any address, and a port of 10,000
 * digits, inside and outside brackets. */
static void
test_long(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	GString *s = g_string_new(NULL);

	(void)state;
	g_string_append(s, "[");
	for (int i = 0; i < 2000; i++)
		g_string_append(s, "0:");
	g_string_append(s, ":1]:80");
	assert_false(sg_policy_parse_listen(s->str, &ss, &len));
	g_string_assign(s, "1.2.3.4:");
	for (int i = 0; i < 10000; i++)
		g_string_append_c(s, '8');
	assert_false(sg_policy_parse_listen(s->str, &ss, &len));
	g_string_assign(s, "");
	for (int i = 0; i < 10000; i++)
		g_string_append(s, "1.");
	g_string_append(s, "1:80");
	assert_false(sg_policy_parse_listen(s->str, &ss, &len));
	/* The longest IPv6 text form fits. */
	assert_true(sg_policy_parse_listen(
	    "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:1", &ss, &len));
	g_string_free(s, TRUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
