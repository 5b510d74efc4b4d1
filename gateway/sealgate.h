/* Declarations shared by the files of the sealgate binary (gateway/).
 * Not part of the library interface in include/. */
#ifndef SEALGATE_GATEWAY_H
#define SEALGATE_GATEWAY_H

#include <stdbool.h>
#include <sys/types.h>

#include "msgfile.h"
#include "sealgate/keystore.h"
#include "sealgate/pipeline.h"
#include "sealgate/policy.h"

/* Exit codes of `sealgate process` (DESIGN.md §3). */
enum {
	SG_EXIT_ACCEPT = 0,
	SG_EXIT_USAGE = 1,
	SG_EXIT_REJECT = 2,
	SG_EXIT_TEMPFAIL = 3,
	SG_EXIT_QUARANTINE = 4,
};

/* Verbs. argv[0] is the verb itself. Each returns the process exit code. */
int sg_cmd_milter(int argc, char **argv);
int sg_cmd_process(int argc, char **argv);
int sg_cmd_policy(int argc, char **argv);
int sg_cmd_keys(int argc, char **argv);
int sg_cmd_explain(int argc, char **argv);

/* Parses the options of a verb that takes only -c/--config (anywhere
 * among its arguments); returns optind, or -1 after a usage error. */
int sg_parse_config_option(int argc, char **argv, const char **config);

/* Options and state of the verbs that take a message: process and
 * policy explain. */
struct sg_cli {
	const char *config, *in, *out;
	bool json;
	bool bad_envelope;       /* an address the milter would refuse */
	bool help;               /* --help: the usage went to stdout */
	char *from;              /* canonical env.from */
	char *client_ip;         /* env.client_ip as the milter writes it */
	bool client_ip_given;    /* --client-ip (an address or "unknown") */
	struct sg_envelope env;
	struct sg_policy *pol;
	struct sg_keystore *ks;
	struct sg_input *input;  /* NULL when no -i and input is optional */
	struct sg_msg *msg;
};

enum {
	SG_CLI_OUTPUT = 1 << 0,         /* accepts -o */
	SG_CLI_JSON = 1 << 1,           /* accepts --json */
	SG_CLI_INPUT_OPTIONAL = 1 << 2, /* without -i: envelope only */
	SG_CLI_FLOOR = 1 << 3,          /* decrypts: OpenSSL's security floor */
	SG_CLI_SECRET = 1 << 4,         /* uses secret keys (sg_secret_keys_user) */
};

/* Parses the options, loads the policy, opens the keystore and reads the
 * message into cli; reports problems on stderr. */
int sg_cli_open(int argc, char **argv, int flags, struct sg_cli *cli);

/* Parses --from, --to..., --client-ip, --auth, -c, -i and, as flags allow,
 * -o and --json; -1 after printing the usage (on stdout for --help, with
 * cli->help set). Without --client-ip and --auth the client is local
 * submission: SG_LOCAL_SUBMISSION_IP, no login, env.client_assumed. */
int sg_parse_message_options(int argc, char **argv, int flags,
			     struct sg_cli *cli);

/* Which client the run assumes, for people: "127.0.0.1 (assumed: local
 * submission; ...)" or "192.0.2.7, login alice (from --client-ip/--auth)".
 * (transfer full) */
char *sg_cli_client_text(const struct sg_cli *cli);

/* Frees everything sg_cli_open set up. */
void sg_cli_clear(struct sg_cli *cli);

/* Loads the policy (path NULL: the default file) and prints every problem
 * on stderr. Returns NULL on failure. (transfer full) */
struct sg_policy *sg_load_policy_or_report(const char *path);

/* Opens the policy's keystore, printing the reason on stderr on failure. */
struct sg_keystore *sg_open_keystore_or_report(const struct sg_policy *pol,
					       int flags);

/* A snapshot of the policy's keystore (sg_keystore_snapshot), printing
 * the reason on stderr on failure. */
struct sg_keystore *sg_open_snapshot_or_report(const struct sg_policy *pol);

/* The milter's keystore snapshot (gateway/keysnap.c). start builds the
 * first (false, reported on stderr, when it cannot); get returns a reference to the
 * snapshot in force for pol's keystore after one stat() of its generation
 * file, building a new one first when the keystore changed (a build that
 * fails keeps the previous snapshot and is logged), NULL when there is
 * none; reload builds a new one whatever the generation (SIGUSR1). */
bool sg_keysnap_start(const struct sg_policy *pol);
struct sg_keystore *sg_keysnap_get(const struct sg_policy *pol);
void sg_keysnap_reload(const struct sg_policy *pol);

/* The milter's callbacks (gateway/milter.c), for its verb: policy_init
 * gives the milter its first policy (a reference it keeps); policy returns a new reference to the one in force; swap puts
 * pol in force and returns the previous one (for the caller to release);
 * register tells libmilter of the socket and the callbacks, which answer
 * as fits the socket's kind (unix or TCP). */
void sg_milter_policy_init(struct sg_policy *pol);
struct sg_policy *sg_milter_policy(void);
struct sg_policy *sg_milter_policy_swap(struct sg_policy *pol);
bool sg_milter_register(const char *sock);

/* Whom `sealgate milter` runs as (gateway/privs.c); every function prints
 * what went wrong on stderr and returns false. */
struct sg_privs {
	bool change;          /* started as root: becomes uid, gid, groups */
	uid_t uid;            /* the user it runs as */
	gid_t gid;            /* and its group */
	char *user, *group;   /* their names */
	gid_t *groups;        /* supplementary groups after the change */
	int ngroups;
	int socket_mode;      /* of a unix socket */
	gid_t socket_gid;     /* its group; (gid_t)-1: as created */
	gid_t *saved_groups;  /* root's, while sg_privs_assume is in force */
	int nsaved;
	gid_t saved_egid;
};

/* No core file (RLIMIT_CORE 0, soft and hard) and not dumpable. */
bool sg_privs_no_core_dumps(void);
/* Decides from gateway.user (or user_opt, -u), gateway.group and the
 * socket keys whom the milter runs as; refuses to run as root unless
 * told to. */
bool sg_privs_plan(const struct sg_policy *pol, const char *user_opt,
		   struct sg_privs *out);
/* Acts as the user with the effective ids only (root stays in the real
 * and saved ids), and back: for the checks before the socket opens. */
bool sg_privs_assume(struct sg_privs *p);
bool sg_privs_restore(struct sg_privs *p);
/* As the user: the policy can be read again (SIGUSR1), the spool takes
 * files, the keystore is the user's and safe. */
bool sg_privs_check_files(const struct sg_policy *pol,
			  const struct sg_privs *p);
/* The file of a unix socket spec; NULL for inet sockets. */
const char *sg_privs_socket_path(const char *spec);
/* The umask that makes a new unix socket exactly gateway.socket_mode. */
mode_t sg_privs_socket_umask(const struct sg_privs *p);
/* After the socket was created (with sg_privs_socket_umask): its owner
 * and group; refuses an inherited ACL. Nothing for inet sockets. */
bool sg_privs_socket(const struct sg_privs *p, const char *spec);
/* For good: groups, group, user; then checks that nothing else is left
 * (ids, groups, capabilities, a way back to root), no core dumps, no new
 * privileges for the programs it starts. */
bool sg_privs_drop(const struct sg_privs *p);
void sg_privs_clear(struct sg_privs *p);

/* Whether this user may use the secret keys of the policy's keystore:
 * root may not in a keystore of another user (the gateway's), as gpg
 * would start a gpg-agent of root's there that the gateway's user cannot
 * reach, and its decryptions and signatures would fail while it runs.
 * Prints why not, naming the command. */
bool sg_secret_keys_user(const struct sg_policy *pol, const char *command);

/* Creates gateway.spool_dir (0700) when missing; prints why on failure. */
bool sg_ensure_spool_dir(const struct sg_policy *pol);

/* s safe to print on a terminal: control characters (C0, DEL, C1) and
 * bytes that are not UTF-8 as \xHH, invisible format characters (bidi
 * controls, zero-width ones) as \uHHHH, a backslash doubled; other UTF-8
 * as it is. For every value from key material, certificates, files and
 * file names in human-readable output. (transfer full) */
char *sg_escape(const char *s);

/* fprintf of one line (fmt ending in a newline or not) escaped as a whole
 * with sg_escape, the final newline kept. */
void sg_tprintf(FILE *fp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends s as a JSON string (NULL: null); control characters, bytes
 * that are not UTF-8 (as U+FFFD) and the invisible characters sg_escape
 * escapes are written as \uHHHH, so the text is one safe line. */
void sg_json_string(GString *out, const char *s);

/* Checks the OpenSSL release in use against the security floor (README,
 * "Security floor"). Writes what to report to msg (empty when the release
 * is fine); returns false when the release is below the floor and the
 * policy does not allow it. */
bool sg_security_floor(const struct sg_policy *pol, char *msg, size_t len);

/* sg_pipeline_init, once, before any thread; a failure is reported on
 * stderr. */
bool sg_init_libraries(void);

/* Logging: stderr when foreground, syslog (LOG_MAIL) otherwise. */
enum sg_log_level { SG_LOG_ERR, SG_LOG_WARNING, SG_LOG_INFO, SG_LOG_DEBUG };
void sg_log_open(bool to_stderr);
void sg_log(enum sg_log_level level, const char *qid, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A line as it is (no queue id, no escaping): for a JSON object that
 * sg_json_string made safe. */
void sg_log_line(enum sg_log_level level, const char *line);

/* The milter's line per message (gateway/msglog.c): key=value pairs or,
 * with SG_LOG_FORMAT_JSON, one JSON object. */
struct sg_msglog {
	const char *qid;
	const struct sg_msg *msg;
	int cls;                /* enum sg_class of the transaction */
	int format;             /* enum sg_log_format */
	double ms;              /* since MAIL FROM */
	double busy_ms;         /* in the message's callbacks */
};
void sg_msglog_write(const struct sg_msglog *l, const struct sg_result *res);

/* The milter's metrics (gateway/metrics.c), served at gateway.metrics.
 * Every function does nothing while the endpoint is off. */
struct sg_metrics_gauges {
	struct sg_expiring expiring;    /* within 30 days */
	bool snapshot;                  /* a keystore snapshot is in force */
};
typedef void (*sg_metrics_gauges_fn)(struct sg_metrics_gauges *g);

/* Starts the endpoint at listen ("HOST:PORT", NULL: off) in a thread of
 * its own; gauges is called at each scrape. False (said on stderr) when
 * it cannot listen. */
bool sg_metrics_start(const char *listen, sg_metrics_gauges_fn gauges);
void sg_metrics_stop(void);
/* A message's verdict at its end; busy_ns: time in its callbacks. */
void sg_metrics_message(const struct sg_result *res, long long busy_ns);
/* A refusal by the milter itself of a MAIL FROM or a recipient (cause: a
 * fixed word); a message refused once its data began counts through
 * sg_metrics_message. */
void sg_metrics_refusal(enum sg_verdict v, const char *cause);
/* A recipient deferred to a transaction of its own. */
void sg_metrics_deferred(const char *cause);
void sg_metrics_reload(bool ok);
/* Messages between MAIL FROM and their end: +1, -1. */
void sg_metrics_in_flight(int delta);

#endif
