/* Start-up helpers shared by the verbs. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sealgate/addr.h"
#include "sealgate/floor.h"
#include "sealgate/msg.h"
#include "sealgate/pipeline.h"
#include "sealgate.h"

struct sg_policy *
sg_load_policy_or_report(const char *path)
{
	GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
	struct sg_policy *pol = NULL;

	if (path == NULL)
		path = sg_policy_default_path();
	if (sg_policy_load(path, errors, &pol) < 0) {
		for (guint i = 0; i < errors->len; i++)
			sg_tprintf(stderr, "%s\n",
			    (char *)g_ptr_array_index(errors, i));
		pol = NULL;
	}
	g_ptr_array_free(errors, TRUE);
	return pol;
}

struct sg_keystore *
sg_open_keystore_or_report(const struct sg_policy *pol, int flags)
{
	struct sg_keystore *ks = NULL;
	struct sg_err err = { 0 };

	if (sg_keystore_open(pol->gateway.keystore, flags, &err, &ks) < 0) {
		sg_tprintf(stderr, "sealgate: %s\n", err.msg);
		return NULL;
	}
	return ks;
}

bool
sg_secret_keys_user(const struct sg_policy *pol, const char *command)
{
	struct passwd *pw;
	struct stat st;
	char *owner;

	if (geteuid() != 0 || stat(pol->gateway.keystore, &st) < 0 ||
	    st.st_uid == 0)
		return true;
	pw = getpwuid(st.st_uid);
	owner = pw != NULL ? g_strdup(pw->pw_name)
	    : g_strdup_printf("%u", (unsigned)st.st_uid);
	sg_tprintf(stderr, "sealgate: keystore %s belongs to user %s: run "
	    "\"sealgate %s\" as that user (sudo -u %s sealgate %s ...); as "
	    "root it would leave a gpg-agent of root's in the keystore, and the "
	    "gateway could not decrypt or sign while it runs\n",
	    pol->gateway.keystore, owner, command, owner, command);
	g_free(owner);
	return false;
}

bool
sg_ensure_spool_dir(const struct sg_policy *pol)
{
	const char *dir = pol->gateway.spool_dir;
	struct stat st;

	if (g_mkdir_with_parents(dir, 0700) < 0 || stat(dir, &st) < 0) {
		sg_tprintf(stderr, "sealgate: spool directory %s: %s\n", dir,
		    strerror(errno));
		return false;
	}
	if (!S_ISDIR(st.st_mode)) {
		sg_tprintf(stderr, "sealgate: spool directory %s is not a directory\n",
		    dir);
		return false;
	}
	return true;
}

bool
sg_security_floor(const struct sg_policy *pol, char *msg, size_t len)
{
	unsigned long num = sg_openssl_runtime();
	char version[32], fixed[32];
	bool fixable;

	msg[0] = '\0';
	if (!sg_openssl_vulnerable(num, fixed, sizeof(fixed)))
		return true;
	sg_openssl_version_text(num, version, sizeof(version));
	fixable = strcmp(fixed, "none") != 0;
	snprintf(msg, len, "OpenSSL %s in use has known flaws: %s; %s%s%s; %s",
	    version, SG_OPENSSL_FLAWS,
	    fixable ? "upgrade to " : "no release of this branch is fixed: "
	    "upgrade to a supported branch",
	    fixable ? fixed : "", fixable ? " or later (make deps, or "
	    "apt-get install libssl3 openssl)" : "",
	    pol->gateway.allow_vulnerable_openssl ?
	    "running anyway because gateway.allow_vulnerable_openssl is true" :
	    "refusing to run (gateway.allow_vulnerable_openssl: true accepts "
	    "the risk)");
	return pol->gateway.allow_vulnerable_openssl;
}

bool
sg_init_libraries(void)
{
	struct sg_err err = { 0 };

	if (sg_pipeline_init(&err) < 0) {
		fprintf(stderr, "sealgate: %s\n", err.msg);
		return false;
	}
	return true;
}

int
sg_parse_config_option(int argc, char **argv, const char **config)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (c != 'c')
			return -1;
		*config = optarg;
	}
	return optind;
}

/* The usage of process and policy explain; with --help (long), also
 * what the client options stand for. */
static void
message_usage(FILE *fp, int flags, bool long_form)
{
	fprintf(fp, "usage: sealgate %s [-c FILE] --from ADDR --to ADDR "
	    "[--to ADDR ...] [--client-ip IP|unknown] [--auth USER] [-i IN]%s\n",
	    (flags & SG_CLI_OUTPUT) ? "process" : "policy explain",
	    (flags & SG_CLI_OUTPUT) ? " [-o OUT]" : " [--json]");
	if (!long_form) {
		fprintf(fp, "without --client-ip and --auth: local submission "
		    "(client %s, no login); --help says more\n",
		    SG_LOCAL_SUBMISSION_IP);
		return;
	}
	fprintf(fp, "\n"
	    "--client-ip and --auth stand for what the MTA tells the milter: the\n"
	    "SMTP client's address (\"unknown\": none) and its SMTP AUTH login.\n"
	    "Without both, the message is local submission, as Postfix presents\n"
	    "mail from its sendmail command to non_smtpd_milters: client %s,\n"
	    "no login. An internal sender's mail is then outbound when %s is\n"
	    "in gateway.trusted_networks (the default), and signed only when it\n"
	    "is in gateway.signing_networks (empty by default).\n"
	    "One option alone leaves the other unset: --auth alone is a login from\n"
	    "an unknown address, --client-ip alone a client without a login.\n",
	    SG_LOCAL_SUBMISSION_IP, SG_LOCAL_SUBMISSION_IP);
}

/* Sets the client from --client-ip and --auth (NULL: not given), or
 * local submission without both; -1 after saying what is wrong. */
static int
set_client(struct sg_cli *cli, const char *ip, const char *auth)
{
	unsigned char addr[16];
	char buf[INET6_ADDRSTRLEN];
	int family;

	if (auth != NULL && *auth == '\0') {
		fprintf(stderr, "sealgate: --auth needs a login\n");
		return -1;
	}
	cli->env.auth = auth;
	cli->client_ip_given = ip != NULL;
	if (ip == NULL && auth == NULL) {
		cli->env.client_ip = SG_LOCAL_SUBMISSION_IP;
		cli->env.client_assumed = true;
		return 0;
	}
	if (ip == NULL || strcmp(ip, "unknown") == 0)
		return 0;
	/* The form the milter writes (inet_ntop of the connection's
	 * address), so that the output and the decisions match. */
	family = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;
	if (inet_pton(family, ip, addr) != 1 ||
	    inet_ntop(family, addr, buf, sizeof(buf)) == NULL) {
		sg_tprintf(stderr, "sealgate: --client-ip \"%s\" is not an IPv4 "
		    "or IPv6 address (nor \"unknown\")\n", ip);
		return -1;
	}
	cli->client_ip = g_strdup(buf);
	cli->env.client_ip = cli->client_ip;
	return 0;
}

int
sg_parse_message_options(int argc, char **argv, int flags, struct sg_cli *cli)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "from", required_argument, NULL, 'F' },
		{ "to", required_argument, NULL, 'T' },
		{ "client-ip", required_argument, NULL, 'I' },
		{ "auth", required_argument, NULL, 'A' },
		{ "input", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ip = NULL, *auth = NULL;
	int c;

	cli->env.to = g_ptr_array_new_with_free_func(g_free);
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:i:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cli->config = optarg; break;
		case 'F': cli->env.from = optarg; break;
		case 'T': g_ptr_array_add(cli->env.to, g_strdup(optarg)); break;
		case 'I': ip = optarg; break;
		case 'A': auth = optarg; break;
		case 'i': cli->in = optarg; break;
		case 'o':
			if (!(flags & SG_CLI_OUTPUT))
				goto usage;
			cli->out = optarg;
			break;
		case 'j':
			if (!(flags & SG_CLI_JSON))
				goto usage;
			cli->json = true;
			break;
		case 'h':
			message_usage(stdout, flags, true);
			cli->help = true;
			return -1;
		default:
			goto usage;
		}
	}
	if (cli->env.from != NULL && cli->env.to->len > 0 && optind == argc &&
	    set_client(cli, ip, auth) == 0)
		return 0;
usage:
	message_usage(stderr, flags, false);
	return -1;
}

char *
sg_cli_client_text(const struct sg_cli *cli)
{
	const struct sg_envelope *env = &cli->env;
	const char *ip = env->client_ip != NULL ? env->client_ip
	    : "unknown address";

	if (env->client_assumed)
		return g_strdup_printf("%s (assumed: local submission; "
		    "--client-ip/--auth to change)", ip);
	return g_strdup_printf("%s, %s%s (from %s)", ip,
	    env->auth != NULL ? "login " : "no login",
	    env->auth != NULL ? env->auth : "",
	    env->auth == NULL ? "--client-ip" : cli->client_ip_given ?
	    "--client-ip/--auth" : "--auth");
}

void
sg_cli_clear(struct sg_cli *cli)
{
	if (cli->env.to != NULL)
		g_ptr_array_free(cli->env.to, TRUE);
	g_free(cli->from);
	g_free(cli->client_ip);
	sg_msg_free(cli->msg);
	sg_input_free(cli->input);
	sg_keystore_free(cli->ks);
	sg_policy_unref(cli->pol);
	memset(cli, 0, sizeof(*cli));
}

/* The security floor for a command: the message goes to stderr. */
static bool
floor_or_report(const struct sg_policy *pol)
{
	char msg[SG_ERR_MAX];
	bool ok = sg_security_floor(pol, msg, sizeof(msg));

	if (msg[0] != '\0')
		fprintf(stderr, "sealgate: %s\n", msg);
	return ok;
}

/* The envelope in canonical form, as the milter sees it; a form it
 * refuses is reported with the reply the milter would give. */
static int
canon_envelope(struct sg_cli *cli)
{
	struct sg_err err = { 0 };
	char *addr;

	if (sg_addr_canon(cli->env.from, &cli->from, &err) < 0) {
		sg_tprintf(stderr, "553 5.1.7 <%s>: sender address not accepted: "
		    "%s\n", cli->env.from, err.msg);
		return SG_EINVAL;
	}
	cli->env.from = cli->from;
	for (guint i = 0; i < cli->env.to->len; i++) {
		if (sg_addr_canon_rcpt(g_ptr_array_index(cli->env.to, i), &addr,
		    &err) < 0) {
			sg_tprintf(stderr, "553 5.1.3 <%s>: recipient address not "
			    "accepted: %s\n", (char *)g_ptr_array_index(
			    cli->env.to, i), err.msg);
			return SG_EINVAL;
		}
		g_free(g_ptr_array_index(cli->env.to, i));
		g_ptr_array_index(cli->env.to, i) = addr;
	}
	return SG_OK;
}

int
sg_cli_open(int argc, char **argv, int flags, struct sg_cli *cli)
{
	int rc;

	if (sg_parse_message_options(argc, argv, flags, cli) < 0)
		return SG_EINVAL;
	if (canon_envelope(cli) < 0) {
		cli->bad_envelope = true;
		return SG_EINVAL;
	}
	cli->pol = sg_load_policy_or_report(cli->config);
	if (cli->pol == NULL || ((flags & SG_CLI_SECRET) &&
	    !sg_secret_keys_user(cli->pol, "process")) ||
	    !sg_ensure_spool_dir(cli->pol) || !sg_init_libraries())
		return SG_ECONFIG;
	if ((flags & SG_CLI_FLOOR) && !floor_or_report(cli->pol))
		return SG_ECONFIG;
	cli->ks = sg_open_snapshot_or_report(cli->pol);
	if (cli->ks == NULL)
		return SG_EKEYSTORE;
	if (cli->in == NULL && (flags & SG_CLI_INPUT_OPTIONAL))
		rc = sg_envelope_to_msg(&cli->env, cli->pol->gateway.spool_dir,
		    &cli->msg);
	else if ((rc = sg_input_read(cli->in, cli->pol->gateway.spool_dir,
	    &cli->input)) == 0)
		rc = sg_input_to_msg(cli->input, cli->pol->gateway.spool_dir,
		    &cli->env, &cli->msg);
	if (rc < 0)
		fprintf(stderr, "sealgate: cannot read the message: %s\n",
		    sg_strerror(rc));
	return rc;
}

/* What sg_escape writes as \uHHHH: it could hide or reorder text. */
static bool
invisible(gunichar c)
{
	GUnicodeType t = g_unichar_type(c);

	return t == G_UNICODE_FORMAT || t == G_UNICODE_LINE_SEPARATOR ||
	    t == G_UNICODE_PARAGRAPH_SEPARATOR;
}

/* c as \uHHHH, a surrogate pair above U+FFFF. */
static void
json_escape(GString *out, gunichar c)
{
	if (c > 0xffff) {
		c -= 0x10000;
		g_string_append_printf(out, "\\u%04x\\u%04x",
		    0xd800 + (unsigned)(c >> 10), 0xdc00 + (unsigned)(c & 0x3ff));
	} else {
		g_string_append_printf(out, "\\u%04x", (unsigned)c);
	}
}

void
sg_json_string(GString *out, const char *s)
{
	if (s == NULL) {
		g_string_append(out, "null");
		return;
	}
	g_string_append_c(out, '"');
	for (const char *p = s, *end = s + strlen(s); p < end;) {
		gunichar c = g_utf8_get_char_validated(p, end - p);

		if (c == (gunichar)-1 || c == (gunichar)-2) {
			/* Not UTF-8: JSON cannot carry the byte. */
			g_string_append(out, "\\ufffd");
			p++;
			continue;
		}
		if (c == '"' || c == '\\')
			g_string_append_printf(out, "\\%c", (char)c);
		else if (g_unichar_iscntrl(c) || invisible(c))
			json_escape(out, c);
		else
			g_string_append_len(out, p, g_utf8_next_char(p) - p);
		p = g_utf8_next_char(p);
	}
	g_string_append_c(out, '"');
}
