/* `sealgate milter`: libmilter callbacks (the verb's start-up is in
 * gateway/cmd_milter.c). Each callback only moves data into the
 * transaction or calls the pipeline; every unexpected condition answers
 * SMFIS_TEMPFAIL so that the MTA keeps the mail (DESIGN.md §4). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmilter/mfapi.h>

#include "sealgate/addr.h"
#include "sealgate/msg.h"
#include "sealgate/openpgp.h"
#include "sealgate/pipeline.h"
#include "sealgate.h"

#define BODY_CHUNK 65535

/* The current policy snapshot; a message keeps the one it started with. */
static struct {
	pthread_mutex_t lock;
	struct sg_policy *pol;
} current = { PTHREAD_MUTEX_INITIALIZER, NULL };

struct conn {
	char *client_ip;
	struct sg_policy *pol;      /* snapshot of the current message */
	struct sg_keystore *ks;     /* keystore snapshot of the message */
	struct sg_msg *msg;
	enum sg_class cls;          /* class of the accepted recipients */
	struct timespec start;      /* MAIL FROM */
	struct timespec cb_start;   /* entry of the callback that runs */
	long long busy_ns;          /* in this message's callbacks so far */
	bool in_flight;             /* counted in the metrics' gauge */
	bool data;                  /* the message's data has begun */
	/* A refusal found where the MTA takes no answer (cb_negotiate),
	 * given at the end of the message: SMFIS_CONTINUE for none. */
	sfsistat held;
	char *held_reply[3];        /* rcode, xcode, text */
};

static struct sg_policy *
policy_snapshot(void)
{
	struct sg_policy *pol;

	pthread_mutex_lock(&current.lock);
	pol = sg_policy_ref(current.pol);
	pthread_mutex_unlock(&current.lock);
	return pol;
}

static void
message_end(struct conn *c)
{
	sg_msg_free(c->msg);
	c->msg = NULL;
	sg_keystore_free(c->ks);
	c->ks = NULL;
	sg_policy_unref(c->pol);
	c->pol = NULL;
	c->cls = SG_CLASS_NONE;
	c->busy_ns = 0;
	c->data = false;
	if (c->in_flight)
		sg_metrics_in_flight(-1);
	c->in_flight = false;
}

static const char *
qid(const struct conn *c)
{
	return c != NULL && c->msg != NULL ? c->msg->queue_id : "NOQUEUE";
}

static struct conn *
conn_of(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* libmilter refuses a reply longer than 980 bytes (code, enhanced code
 * and text); a text that lists many addresses is cut to this, at a
 * character's start. */
#define REPLY_TEXT_MAX 900

/* Sets an SMTP reply; libmilter rejects text with CR, LF or '%'. The
 * connection keeps a copy for a refusal that is held (hold). */
static void
set_reply(SMFICTX *ctx, const char *rcode, const char *xcode, const char *text)
{
	struct conn *c = conn_of(ctx);
	char *clean = g_strdup(text);
	size_t n = strlen(clean);

	g_strdelimit(clean, "\r\n%", ' ');
	if (n > REPLY_TEXT_MAX) {
		n = REPLY_TEXT_MAX - 3;
		while (n > 0 && ((unsigned char)clean[n] & 0xC0) == 0x80)
			n--;
		memcpy(clean + n, "...", 4);
	}
	if (smfi_setreply(ctx, (char *)rcode, (char *)xcode, clean) != MI_SUCCESS)
		sg_log(SG_LOG_WARNING, NULL, "smfi_setreply failed");
	if (c != NULL) {
		for (size_t i = 0; i < G_N_ELEMENTS(c->held_reply); i++)
			g_free(c->held_reply[i]);
		c->held_reply[0] = g_strdup(rcode);
		c->held_reply[1] = g_strdup(xcode);
		c->held_reply[2] = clean;
	} else {
		g_free(clean);
	}
}

static bool unix_socket;        /* set once, before the first connection */

/* The answer to DATA, a header field or the end of the header when all
 * went well: none on a unix socket (cb_negotiate). */
static sfsistat
no_answer(void)
{
	return unix_socket ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/*
 * A refusal found at one of these steps (a spool that fails) is logged
 * and counted at once; on a unix socket the message's spool is dropped,
 * the steps after it are passed over and the refusal is given at the end
 * of the message. st is what the callback answers otherwise.
 */
static sfsistat
hold(struct conn *c, sfsistat st)
{
	if (!unix_socket)
		return st;
	if (c != NULL && c->held == SMFIS_CONTINUE) {
		c->held = st;
		message_end(c);
	}
	return SMFIS_NOREPLY;
}

static void
held_clear(struct conn *c)
{
	c->held = SMFIS_CONTINUE;
	for (size_t i = 0; i < G_N_ELEMENTS(c->held_reply); i++) {
		g_free(c->held_reply[i]);
		c->held_reply[i] = NULL;
	}
}

static void message_refused(struct conn *c, enum sg_verdict v,
			    const char *cause, const char *reason);

/* The one place internal failures turn into an answer; cause is a fixed
 * word for the metrics. */
static sfsistat
tempfail(SMFICTX *ctx, struct conn *c, const char *cause, const char *why)
{
	sg_log(SG_LOG_ERR, qid(c), "temporary failure: %s", why);
	set_reply(ctx, "451", "4.3.0", "sealgate: temporary failure, try again later");
	if (c != NULL && c->data && c->msg != NULL)
		message_refused(c, SG_VERDICT_TEMPFAIL, cause, why);
	else
		sg_metrics_refusal(SG_VERDICT_TEMPFAIL, cause);
	return SMFIS_TEMPFAIL;
}

static sfsistat
cb_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
	struct conn *c = g_new0(struct conn, 1);
	char buf[INET6_ADDRSTRLEN];

	(void)hostname;
	if (sa != NULL && sa->sa_family == AF_INET &&
	    inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)sa)->sin_addr, buf,
	    sizeof(buf)) != NULL)
		c->client_ip = g_strdup(buf);
	else if (sa != NULL && sa->sa_family == AF_INET6 &&
	    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)sa)->sin6_addr,
	    buf, sizeof(buf)) != NULL)
		c->client_ip = g_strdup(buf);
	if (smfi_setpriv(ctx, c) != MI_SUCCESS) {
		g_free(c->client_ip);
		g_free(c);
		return tempfail(ctx, NULL, "milter", "smfi_setpriv failed");
	}
	return SMFIS_CONTINUE;
}

static void
refresh_queue_id(SMFICTX *ctx, struct conn *c)
{
	const char *id = smfi_getsymval(ctx, "i");

	if (id != NULL && *id && c->msg != NULL) {
		g_free(c->msg->queue_id);
		c->msg->queue_id = g_strdup(id);
	}
}

/* An envelope address that is not one canonical address is refused
 * (DESIGN.md §4 rule 7): nothing may be decided from a form the MTA would
 * resolve differently. */
static sfsistat
bad_address(SMFICTX *ctx, struct conn *c, const char *xcode, const char *what,
	    const struct sg_err *err)
{
	char *text = g_strdup_printf("%s address not accepted: %s", what,
	    err->msg);

	set_reply(ctx, "553", xcode, text);
	sg_metrics_refusal(SG_VERDICT_REJECT, "address");
	sg_log(SG_LOG_INFO, qid(c), "verdict=reject reason=\"%s\"", text);
	g_free(text);
	return SMFIS_REJECT;
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_of(ctx);
	struct sg_err err = { 0 };
	const char *auth;
	char *from = NULL;

	if (c == NULL)
		return tempfail(ctx, NULL, "milter", "no connection context");
	message_end(c);
	held_clear(c);
	clock_gettime(CLOCK_MONOTONIC, &c->start);
	c->pol = policy_snapshot();
	if (sg_msg_new(c->pol->gateway.spool_dir, &c->msg) < 0)
		return tempfail(ctx, c, "spool", "cannot create message state");
	refresh_queue_id(ctx, c);
	c->ks = sg_keysnap_get(c->pol);
	if (c->ks == NULL)
		return tempfail(ctx, c, "keystore", "no keystore snapshot");
	if (argv[0] == NULL)
		sg_err_set(&err, SG_EINVAL, "missing");
	if (argv[0] == NULL || sg_addr_canon(argv[0], &from, &err) < 0)
		return bad_address(ctx, c, "5.1.7", "sender", &err);
	sg_msg_set_sender(c->msg, from);
	g_free(from);
	c->msg->client_ip = g_strdup(c->client_ip);
	auth = smfi_getsymval(ctx, "{auth_authen}");
	c->msg->auth_user = auth != NULL && *auth ? g_strdup(auth) : NULL;
	sg_metrics_in_flight(1);
	c->in_flight = true;
	return SMFIS_CONTINUE;
}

static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = conn_of(ctx);
	struct sg_err err = { 0 };
	enum sg_class cls;
	char *rcpt = NULL, *text, fpr[SG_FPR_MAX] = "";
	sfsistat st = SMFIS_CONTINUE;

	if (c == NULL || c->msg == NULL)
		return tempfail(ctx, c, "milter", "RCPT without MAIL");
	refresh_queue_id(ctx, c); /* Postfix assigns it at the first RCPT */
	if (argv[0] == NULL || sg_addr_canon_rcpt(argv[0], &rcpt, &err) < 0) {
		if (err.msg[0] == '\0')
			sg_err_set(&err, SG_EINVAL, "empty address");
		return bad_address(ctx, c, "5.1.3", "recipient", &err);
	}
	if (sg_pipeline_classify(c->pol, c->ks, c->msg, rcpt, &cls,
	    fpr, NULL) < 0) {
		st = tempfail(ctx, c, "classification",
		    "recipient classification failed");
	} else if (c->cls != SG_CLASS_NONE && cls != c->cls) {
		/* DESIGN.md §4 rule 6: the sending MTA retries it alone. */
		text = g_strdup_printf("<%s> needs a different treatment (%s); "
		    "it will be delivered in a separate transaction", rcpt,
		    sg_class_name(cls));
		set_reply(ctx, "452", "4.5.3", text);
		sg_log(SG_LOG_INFO, qid(c), "rcpt=<%s> class=%s deferred: "
		    "transaction class is %s", rcpt, sg_class_name(cls),
		    sg_class_name(c->cls));
		g_free(text);
		sg_metrics_deferred("mixed-classes");
		st = SMFIS_TEMPFAIL;
	} else if (sg_msg_add_rcpt(c->msg, rcpt, cls,
	    sg_class_method(cls) >= 0 ? fpr : NULL) < 0) {
		set_reply(ctx, "452", "4.5.3", "too many recipients");
		sg_metrics_deferred("too-many-recipients");
		st = SMFIS_TEMPFAIL;
	} else {
		c->cls = cls;
	}
	g_free(rcpt);
	return st;
}

static sfsistat
cb_data(SMFICTX *ctx)
{
	/* Registered so that the MTA does not wait on Nagle's algorithm
	 * between RCPT and the header (DESIGN.md §5); marks where a refusal
	 * starts to count as a message's. */
	struct conn *c = conn_of(ctx);

	if (c != NULL)
		c->data = true;
	return no_answer();
}

/* The message could not be spooled (rc): tempfail, saying why, e.g. a
 * full spool_dir. */
static sfsistat
spool_failed(SMFICTX *ctx, struct conn *c, const char *what, int rc)
{
	int e = sg_spool_error(c->msg->spool);
	char *why = g_strdup_printf("cannot spool %s in %s: %s", what,
	    c->pol->gateway.spool_dir, e != 0 ? g_strerror(e) : sg_strerror(rc));
	sfsistat st = tempfail(ctx, c, "spool", why);

	g_free(why);
	return st;
}

static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_of(ctx);
	int rc;

	if (c != NULL && c->held != SMFIS_CONTINUE)
		return no_answer();
	if (c == NULL || c->msg == NULL)
		return hold(c, tempfail(ctx, c, "milter", "header without MAIL"));
	c->data = true;
	rc = sg_msg_add_header(c->msg, name, value);
	if (rc < 0 && rc != SG_ELIMIT) /* a limit is judged at end of message */
		return hold(c, spool_failed(ctx, c, "header", rc));
	return no_answer();
}

static sfsistat
cb_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	int rc;

	if (c != NULL && c->held != SMFIS_CONTINUE)
		return no_answer();
	if (c == NULL || c->msg == NULL)
		return hold(c, tempfail(ctx, c, "milter", "header without MAIL"));
	refresh_queue_id(ctx, c);
	rc = sg_msg_end_headers(c->msg);
	if (rc < 0)
		return hold(c, spool_failed(ctx, c, "header", rc));
	return no_answer();
}

static sfsistat
cb_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct conn *c = conn_of(ctx);
	char *text;
	int rc;

	if (c != NULL && c->held != SMFIS_CONTINUE)
		return SMFIS_CONTINUE;  /* refused at the end of the message */
	if (c == NULL || c->msg == NULL)
		return tempfail(ctx, c, "milter", "body without MAIL");
	if ((long long)(sg_spool_size(c->msg->spool) + len) >
	    c->pol->gateway.max_message_size) {
		text = g_strdup_printf("message size exceeds the limit of %lld "
		    "bytes", c->pol->gateway.max_message_size);
		set_reply(ctx, "552", "5.3.4", text);
		message_refused(c, SG_VERDICT_REJECT, "size", "message too large");
		g_free(text);
		message_end(c);
		return SMFIS_REJECT;
	}
	rc = sg_msg_add_body(c->msg, buf, len);
	if (rc < 0)
		return spool_failed(ctx, c, "body", rc);
	return SMFIS_CONTINUE;
}

/* Applies the pipeline's edits; false if the MTA refused one of them. */
static bool
apply_edits(SMFICTX *ctx, const struct sg_edits *ed)
{
	unsigned char buf[BODY_CHUNK];
	size_t n;
	off_t off;

	for (guint i = 0; i < ed->hdr->len; i++) {
		const struct sg_hdr_edit *e = g_ptr_array_index(ed->hdr, i);
		int r;

		/* A name the MTA would misread (a CR ends its header block). */
		if (!sg_header_name_ok(e->name))
			return false;
		switch (e->op) {
		case SG_HDR_ADD:
			r = smfi_addheader(ctx, e->name, e->value);
			break;
		case SG_HDR_CHANGE:
			r = smfi_chgheader(ctx, e->name, (int)e->index, e->value);
			break;
		default:
			r = smfi_chgheader(ctx, e->name, (int)e->index, NULL);
			break;
		}
		if (r != MI_SUCCESS)
			return false;
	}
	if (ed->body == NULL)
		return true;
	for (off = 0;; off += (off_t)n) {
		if (sg_spool_read_at(ed->body, off, buf, sizeof(buf), &n) < 0)
			return false;
		if (n == 0)
			break;
		if (smfi_replacebody(ctx, buf, (int)n) != MI_SUCCESS)
			return false;
	}
	return true;
}

static long long
ns_since(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000000000LL +
	    (now.tv_nsec - start->tv_nsec);
}

/* The line per message (gateway/msglog.c), and what S/MIME capabilities
 * a signature announced. Called from the end-of-message callback, which
 * is still running. */
static void
log_summary(struct conn *c, const struct sg_result *res, long long busy_ns)
{
	const struct sg_msglog line = {
		.qid = qid(c), .msg = c->msg, .cls = c->cls,
		.format = c->pol->gateway.log_format,
		.ms = ns_since(&c->start) / 1e6, .busy_ms = busy_ns / 1e6,
	};

	sg_msglog_write(&line, res);
	/* Inbound: what a valid S/MIME signature announced. A failure to
	 * record it changes nothing for the message. */
	if (res->caps_recorded != NULL)
		sg_log(SG_LOG_INFO, qid(c), "S/MIME capabilities recorded: %s",
		    res->caps_recorded);
	if (res->caps_error != NULL)
		sg_log(SG_LOG_WARNING, qid(c), "S/MIME capabilities not "
		    "recorded: %s", res->caps_error);
}

/* A message the milter refuses itself after its data began (too large, a
 * spool that fails): its line and its counts, as for the verdict at the
 * end of a message. */
static void
message_refused(struct conn *c, enum sg_verdict v, const char *cause,
		const char *reason)
{
	long long busy = c->busy_ns + ns_since(&c->cb_start);
	struct sg_result res;

	sg_result_init(&res);
	res.verdict = v;
	res.action = sg_verdict_name(v);
	res.cause = cause;
	res.reason = g_strdup(reason);
	log_summary(c, &res, busy);
	sg_metrics_message(&res, busy);
	sg_result_clear(&res);
}

/* Long work goes on: the MTA restarts its timeout. */
static void
on_progress(void *ctx)
{
	smfi_progress(ctx);
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);
	struct sg_progress progress;
	struct sg_result res;
	long long busy;
	sfsistat st;
	int rc;

	if (c != NULL && c->held != SMFIS_CONTINUE) {
		/* Logged and counted where it was found. */
		st = c->held;
		if (c->held_reply[0] != NULL)
			smfi_setreply(ctx, c->held_reply[0], c->held_reply[1],
			    c->held_reply[2]);
		held_clear(c);
		message_end(c);
		return st;
	}
	if (c == NULL || c->msg == NULL)
		return tempfail(ctx, c, "milter",
		    "end of message without MAIL");
	refresh_queue_id(ctx, c);
	if (!c->msg->in_body && (rc = sg_msg_end_headers(c->msg)) < 0)
		return spool_failed(ctx, c, "header", rc);
	smfi_progress(ctx);
	sg_progress_init(&progress, on_progress, ctx);
	sg_result_init(&res);
	sg_pipeline_run(c->msg, c->pol, c->ks, &progress, &res);
	switch (res.verdict) {
	case SG_VERDICT_ACCEPT:
		st = apply_edits(ctx, &res.edits) ? SMFIS_ACCEPT : SMFIS_TEMPFAIL;
		if (st == SMFIS_TEMPFAIL) {
			res.verdict = SG_VERDICT_TEMPFAIL;
			res.action = sg_verdict_name(res.verdict);
			res.cause = "edit";
			g_free(res.reason);
			res.reason = g_strdup("the MTA refused an edit");
			set_reply(ctx, "451", "4.3.0",
			    "sealgate: temporary failure, try again later");
		}
		break;
	case SG_VERDICT_REJECT:
		set_reply(ctx, res.rcode, res.xcode, res.text);
		st = SMFIS_REJECT;
		break;
	default:
		set_reply(ctx, res.rcode[0] ? res.rcode : "451",
		    res.xcode[0] ? res.xcode : "4.3.0",
		    res.text ? res.text : "sealgate: temporary failure");
		st = SMFIS_TEMPFAIL;
		break;
	}
	busy = c->busy_ns + ns_since(&c->cb_start);
	log_summary(c, &res, busy);
	sg_metrics_message(&res, busy);
	sg_result_clear(&res);
	message_end(c);
	return st;
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);

	if (c != NULL) {
		message_end(c);
		held_clear(c);
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_close(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);

	if (c != NULL) {
		message_end(c);
		held_clear(c);
		g_free(c->client_ip);
		g_free(c);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

/*
 * The callbacks of a message, timed: the MTA waits for each answer (on a
 * unix socket the steps without one still hold up the next), so their sum
 * is the latency sealgate adds (logged as busy=).
 */
static void
busy_enter(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx);

	if (c != NULL)
		clock_gettime(CLOCK_MONOTONIC, &c->cb_start);
}

static sfsistat
busy_leave(SMFICTX *ctx, sfsistat st)
{
	struct conn *c = conn_of(ctx);

	if (c != NULL)
		c->busy_ns += ns_since(&c->cb_start);
	return st;
}

static sfsistat
timed_envfrom(SMFICTX *ctx, char **argv)
{
	busy_enter(ctx);
	return busy_leave(ctx, cb_envfrom(ctx, argv));
}

static sfsistat
timed_envrcpt(SMFICTX *ctx, char **argv)
{
	busy_enter(ctx);
	return busy_leave(ctx, cb_envrcpt(ctx, argv));
}

static sfsistat
timed_data(SMFICTX *ctx)
{
	busy_enter(ctx);
	return busy_leave(ctx, cb_data(ctx));
}

static sfsistat
timed_header(SMFICTX *ctx, char *name, char *value)
{
	busy_enter(ctx);
	return busy_leave(ctx, cb_header(ctx, name, value));
}

static sfsistat
timed_eoh(SMFICTX *ctx)
{
	busy_enter(ctx);
	return busy_leave(ctx, cb_eoh(ctx));
}

static sfsistat
timed_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	busy_enter(ctx);
	return busy_leave(ctx, cb_body(ctx, buf, len));
}

static sfsistat
timed_eom(SMFICTX *ctx)
{
	busy_enter(ctx);
	return busy_leave(ctx, cb_eom(ctx));
}

/*
 * Protocol options. On a unix socket no answer is given to DATA, the
 * header fields and the end of the header: the MTA sends them without
 * waiting for each, and a spool that fails there is refused at the end of
 * the message (hold). Connect, the envelope, body chunks and the end of
 * the message are answered: libmilter calls the end-of-message callback
 * only after a body callback that answered, should an MTA send body bytes
 * with the end of the message, and a connect that takes no answer could
 * be passed over on a connection that an MTA reuses. Over TCP every step
 * is answered: the MTA's small packets sent back to back would wait on
 * Nagle's algorithm for acknowledgements this side delays. libmilter
 * answers for us if an MTA cannot take a step without answer.
 */
#define MILTER_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY)
#define MILTER_NOREPLY (SMFIP_NR_DATA | SMFIP_NR_HDR | SMFIP_NR_EOH)


static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long actions, unsigned long steps,
	     unsigned long f2, unsigned long f3, unsigned long *pactions,
	     unsigned long *psteps, unsigned long *pf2, unsigned long *pf3)
{
	(void)ctx;
	(void)f2;
	(void)f3;
	if ((actions & MILTER_ACTIONS) != MILTER_ACTIONS) {
		sg_log(SG_LOG_ERR, NULL, "the MTA offers actions 0x%lx; "
		    "sealgate needs 0x%lx", actions,
		    (unsigned long)MILTER_ACTIONS);
		return SMFIS_REJECT;
	}
	*pactions = MILTER_ACTIONS;
	*psteps = (unix_socket ? MILTER_NOREPLY : 0) |
	    (steps & (SMFIP_NOHELO | SMFIP_NOUNKNOWN));
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static struct smfiDesc milter_desc = {
	.xxfi_name = "sealgate",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = MILTER_ACTIONS,
	.xxfi_connect = cb_connect,
	.xxfi_envfrom = timed_envfrom,
	.xxfi_envrcpt = timed_envrcpt,
	.xxfi_header = timed_header,
	.xxfi_eoh = timed_eoh,
	.xxfi_body = timed_body,
	.xxfi_eom = timed_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_data = timed_data,
	.xxfi_negotiate = cb_negotiate,
};

/* ---- what the verb (gateway/cmd_milter.c) needs ---- */

void
sg_milter_policy_init(struct sg_policy *pol)
{
	current.pol = pol;
}

struct sg_policy *
sg_milter_policy(void)
{
	return policy_snapshot();
}

struct sg_policy *
sg_milter_policy_swap(struct sg_policy *pol)
{
	struct sg_policy *old;

	pthread_mutex_lock(&current.lock);
	old = current.pol;
	current.pol = pol;
	pthread_mutex_unlock(&current.lock);
	return old;
}

bool
sg_milter_register(const char *sock)
{
	unix_socket = sg_privs_socket_path(sock) != NULL;
	return smfi_setconn((char *)sock) == MI_SUCCESS &&
	    smfi_register(milter_desc) == MI_SUCCESS;
}
