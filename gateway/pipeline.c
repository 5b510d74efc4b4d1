/* Message pipeline: classify, inspect, encrypt, and describe the result as
 * edits. Knows nothing of libmilter or syslog. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <gmime/gmime.h>

#include "sealgate/mime.h"
#include "sealgate/openpgp.h"
#include "sealgate/pipeline.h"
#include "sealgate/rewrite.h"
#include "sealgate/rules.h"
#include "sealgate/smime.h"

void
sg_result_init(struct sg_result *res)
{
	memset(res, 0, sizeof(*res));
	res->verdict = SG_VERDICT_ACCEPT;
	res->action = "pass";
	res->fprs = g_ptr_array_new_with_free_func(g_free);
	sg_edits_init(&res->edits);
}

void
sg_result_clear(struct sg_result *res)
{
	g_free(res->text);
	g_free(res->reason);
	if (res->fprs != NULL)
		g_ptr_array_free(res->fprs, TRUE);
	sg_edits_clear(&res->edits);
	memset(res, 0, sizeof(*res));
}

const char *
sg_verdict_name(enum sg_verdict v)
{
	switch (v) {
	case SG_VERDICT_ACCEPT:		return "accept";
	case SG_VERDICT_REJECT:		return "reject";
	case SG_VERDICT_TEMPFAIL:	return "tempfail";
	case SG_VERDICT_QUARANTINE:	return "quarantine";
	}
	return "tempfail";
}

const char *
sg_class_name(enum sg_class cls)
{
	switch (cls) {
	case SG_CLASS_PASS:	return "pass";
	case SG_CLASS_INTERNAL:	return "internal";
	case SG_CLASS_PLAIN:	return "plain";
	case SG_CLASS_OPENPGP:	return "openpgp";
	case SG_CLASS_SMIME:	return "smime";
	default:		return "unclassified";
	}
}

void
sg_result_reply(struct sg_result *res, enum sg_verdict v, const char *rcode,
		const char *xcode, const char *fmt, ...)
{
	va_list ap;

	res->verdict = v;
	res->action = sg_verdict_name(v);
	g_strlcpy(res->rcode, rcode, sizeof(res->rcode));
	g_strlcpy(res->xcode, xcode, sizeof(res->xcode));
	g_free(res->text);
	va_start(ap, fmt);
	res->text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	/* Edits never apply to a refused message. */
	sg_edits_clear(&res->edits);
	sg_edits_init(&res->edits);
}

static void
set_reason(struct sg_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
set_reason(struct sg_result *res, const char *fmt, ...)
{
	va_list ap;

	g_free(res->reason);
	va_start(ap, fmt);
	res->reason = g_strdup_vprintf(fmt, ap);
	va_end(ap);
}

/* Internal error: keep the mail at the MTA (DESIGN.md §4 rule 2). */
static int
internal_error(struct sg_result *res, int rc, const char *what,
	       const struct sg_err *err)
{
	sg_result_reply(res, SG_VERDICT_TEMPFAIL, "451", "4.3.0",
	    "sealgate: temporary failure, try again later");
	set_reason(res, "%s: %s", what, err != NULL && *err->msg ? err->msg
	    : sg_strerror(rc));
	return rc < 0 ? rc : SG_EIO;
}

bool
sg_pipeline_outbound(const struct sg_policy *pol, const struct sg_msg *msg)
{
	if (*msg->mail_from == '\0' || !sg_policy_is_internal(pol, msg->mail_from))
		return false;
	return msg->auth_user != NULL ||
	    sg_policy_trusted_ip(pol, msg->client_ip);
}

char *
sg_pipeline_direction(const struct sg_policy *pol, const struct sg_msg *msg)
{
	if (sg_pipeline_outbound(pol, msg))
		return g_strdup_printf("internal sender, %s",
		    msg->auth_user ? "authenticated client"
		    : "client in trusted_networks");
	if (*msg->mail_from == '\0')
		return g_strdup("null sender");
	if (!sg_policy_is_internal(pol, msg->mail_from))
		return g_strdup("sender is not in internal_domains");
	return g_strdup_printf("client %s is neither authenticated nor in "
	    "trusted_networks", msg->client_ip ? msg->client_ip : "(unknown)");
}

int
sg_pipeline_classify(const struct sg_policy *pol, const struct sg_keystore *ks,
		     const struct sg_msg *msg, const char *rcpt,
		     enum sg_class *out, char *key_fpr, char **why)
{
	const struct sg_methods *methods;
	char fpr[SG_FPR_MAX];
	struct sg_err err = { 0 };
	GString *reasons;
	int rc;

	if (!sg_pipeline_outbound(pol, msg)) {
		*out = SG_CLASS_PASS;
		if (why != NULL)
			*why = sg_pipeline_direction(pol, msg);
		return SG_OK;
	}
	if (sg_policy_is_internal(pol, rcpt)) {
		*out = SG_CLASS_INTERNAL;
		if (why != NULL)
			*why = g_strdup("internal recipient");
		return SG_OK;
	}
	methods = sg_policy_envelope_methods(pol, msg->mail_from, rcpt);
	*out = SG_CLASS_PLAIN;
	reasons = g_string_new(NULL);
	for (unsigned i = 0; i < methods->n; i++) {
		bool pgp = methods->v[i] == SG_METHOD_OPENPGP;

		err.msg[0] = '\0';
		rc = pgp ? sg_openpgp_find_key(ks, rcpt, fpr, &err)
		    : sg_smime_find_cert(ks, rcpt, fpr, &err);
		if (rc == SG_ENOKEY) {
			g_string_append_printf(reasons, "%s%s: %s",
			    reasons->len ? "; " : "", pgp ? "openpgp" : "smime",
			    err.msg);
			continue;
		}
		if (rc < 0) {
			if (why != NULL)
				*why = g_strdup(err.msg);
			g_string_free(reasons, TRUE);
			return rc;
		}
		*out = pgp ? SG_CLASS_OPENPGP : SG_CLASS_SMIME;
		if (key_fpr != NULL)
			g_strlcpy(key_fpr, fpr, SG_FPR_MAX);
		if (why != NULL)
			*why = g_strdup_printf("%s %s", pgp ? "OpenPGP key"
			    : "S/MIME certificate", fpr);
		g_string_free(reasons, TRUE);
		return SG_OK;
	}
	if (why != NULL)
		*why = g_strdup(reasons->len ? reasons->str
		    : "no method allowed");
	g_string_free(reasons, TRUE);
	return SG_OK;
}

int
sg_class_method(enum sg_class cls)
{
	switch (cls) {
	case SG_CLASS_OPENPGP:	return SG_METHOD_OPENPGP;
	case SG_CLASS_SMIME:	return SG_METHOD_SMIME;
	default:		return -1;
	}
}

bool
sg_class_has_key(enum sg_class cls, const struct sg_methods *methods)
{
	int m = sg_class_method(cls);

	return m >= 0 && sg_policy_allows_method(methods, m);
}

/* Reader over the encrypted entity: the Content-* header fields, an empty
 * line, then the body straight from the spool. */
struct entity_reader {
	GString *head;
	size_t head_pos;
	struct sg_spool *spool;
	off_t pos;
};

static int
entity_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct entity_reader *er = ctx;
	size_t n;
	int rc;

	if (er->head_pos < er->head->len) {
		n = MIN(len, er->head->len - er->head_pos);
		memcpy(buf, er->head->str + er->head_pos, n);
		er->head_pos += n;
		*nread = n;
		return SG_OK;
	}
	rc = sg_spool_read_at(er->spool, er->pos, buf, len, nread);
	if (rc == 0)
		er->pos += (off_t)*nread;
	return rc;
}

static int
spool_write_crlf(void *ctx, const void *buf, size_t len)
{
	return sg_spool_write_crlf(ctx, buf, len);
}

/* The common part of both encryptions: the entity to encrypt (the
 * Content-* fields and the body) and the spool for the new body. */
struct encryption {
	struct entity_reader er;
	struct sg_reader in;
	struct sg_writer out;
	struct sg_spool *body;
	struct sg_err err;
};

static int
encryption_begin(struct sg_msg *msg, const struct sg_policy *pol,
		 struct encryption *enc)
{
	int rc;

	memset(enc, 0, sizeof(*enc));
	rc = sg_spool_new(pol->gateway.spool_dir, SG_SPOOL_MEM_LIMIT, &enc->body);
	if (rc < 0)
		return rc;
	enc->er.head = sg_rewrite_content_headers(msg);
	enc->er.spool = msg->spool;
	enc->er.pos = msg->body_offset;
	enc->in = (struct sg_reader){ entity_read, &enc->er };
	enc->out = (struct sg_writer){ spool_write_crlf, enc->body };
	return SG_OK;
}

/* Hands the body to res on success; frees it otherwise. */
static int
encryption_end(struct encryption *enc, int rc, const char *what,
	       struct sg_result *res)
{
	g_string_free(enc->er.head, TRUE);
	if (rc < 0) {
		sg_spool_free(enc->body);
		return internal_error(res, rc, what, &enc->err);
	}
	res->edits.body = enc->body;
	res->action = "encrypt";
	return SG_OK;
}

/* RFC 3156 PGP/MIME to the keys in res->fprs. */
static int
encrypt_openpgp(struct sg_msg *msg, const struct sg_policy *pol,
		const struct sg_keystore *ks, struct sg_result *res)
{
	struct encryption enc;
	char boundary[64], *head, *tail, *ctype;
	int rc, flags = 0;

	rc = encryption_begin(msg, pol, &enc);
	if (rc < 0)
		return internal_error(res, rc, "spool", NULL);
	sg_mime_boundary(boundary, sizeof(boundary));
	head = sg_mime_pgp_encrypted_head(boundary);
	tail = sg_mime_pgp_encrypted_tail(boundary);
	if (sg_rewrite_has_hidden_recipient(msg))
		flags |= SG_PGP_HIDE_RECIPIENTS;

	rc = sg_spool_puts(enc.body, head);
	if (rc == 0)
		rc = sg_openpgp_encrypt(ks, (const char *const *)res->fprs->pdata,
		    res->fprs->len, flags, &enc.in, &enc.out, &enc.err);
	if (rc == 0)
		rc = sg_spool_puts(enc.body, tail);
	if (rc == 0) {
		ctype = sg_mime_pgp_encrypted_type(boundary);
		sg_rewrite_content_edits(msg, ctype, NULL, &res->edits);
		g_free(ctype);
		res->method = "openpgp";
		set_reason(res, "%u recipient(s)%s", msg->rcpts->len,
		    (flags & SG_PGP_HIDE_RECIPIENTS) ? ", key ids hidden" : "");
	}
	g_free(head);
	g_free(tail);
	return encryption_end(&enc, rc, "OpenPGP encryption", res);
}

/* S/MIME application/pkcs7-mime to the certificates in res->fprs. */
static int
encrypt_smime(struct sg_msg *msg, const struct sg_policy *pol,
	      const struct sg_keystore *ks, const struct sg_smime_rcpt *rcpts,
	      int cipher, struct sg_result *res)
{
	static const char *const extra[] = {
		"Content-Transfer-Encoding", "base64",
		"Content-Disposition", "attachment; filename=\"smime.p7m\"",
		"Content-Description", "S/MIME Encrypted Message",
		NULL,
	};
	struct encryption enc;
	char *ctype;
	int rc;

	rc = encryption_begin(msg, pol, &enc);
	if (rc < 0)
		return internal_error(res, rc, "spool", NULL);
	rc = sg_smime_encrypt(ks, rcpts, msg->rcpts->len, cipher, &enc.in,
	    &enc.out, &enc.err);
	if (rc == 0) {
		ctype = g_strdup_printf("application/pkcs7-mime; smime-type=%s;"
		    "\n\tname=\"smime.p7m\"", sg_smime_type(cipher));
		sg_rewrite_content_edits(msg, ctype, extra, &res->edits);
		g_free(ctype);
		res->method = "smime";
		set_reason(res, "%u recipient(s), %s", msg->rcpts->len,
		    sg_smime_type(cipher));
	}
	return encryption_end(&enc, rc, "S/MIME encryption", res);
}

/* The class of the transaction. Recipients classified at RCPT time keep
 * that class (and key); the others are classified now. All must agree. */
static int
transaction_class(struct sg_msg *msg, const struct sg_policy *pol,
		  const struct sg_keystore *ks, struct sg_result *res,
		  enum sg_class *out)
{
	enum sg_class first = SG_CLASS_NONE;
	char fpr[SG_FPR_MAX];
	int rc;

	for (guint i = 0; i < msg->rcpts->len; i++) {
		struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		if (r->cls == SG_CLASS_NONE) {
			rc = sg_pipeline_classify(pol, ks, msg, r->addr, &r->cls,
			    fpr, NULL);
			if (rc < 0)
				return internal_error(res, rc, "key lookup", NULL);
			if (sg_class_method(r->cls) >= 0)
				r->key_fpr = g_strdup(fpr);
		}
		if (first == SG_CLASS_NONE)
			first = r->cls;
		if (r->cls != first) {
			sg_result_reply(res, SG_VERDICT_TEMPFAIL, "452", "4.5.3",
			    "recipient <%s> needs a different treatment "
			    "(%s, not %s); deliver it in a separate transaction",
			    r->addr, sg_class_name(r->cls), sg_class_name(first));
			set_reason(res, "mixed recipient classes");
			return SG_OK;
		}
		if (sg_class_method(r->cls) >= 0 && r->key_fpr == NULL)
			return internal_error(res, SG_ENOKEY, "key lookup", NULL);
	}
	*out = first;
	return SG_OK;
}

struct outcome {
	unsigned n_encrypt, n_plain, n_plain_keyless;
	int cipher;                /* S/MIME: the most compatible asked for */
	GArray *oaep;              /* gboolean per recipient */
	GString *missing[3];       /* by on_missing_key: addresses */
	const char *missing_rule[3];
	const char *rule;          /* a deciding rule, for the log */
	const char *strip_tag;     /* tag to remove from the Subject */
};

enum sg_outcome
sg_pipeline_outcome(const struct sg_decision *d, bool has_key)
{
	switch (d->action) {
	case SG_ACTION_NONE:
		return SG_OUTCOME_PLAIN;
	case SG_ACTION_ENCRYPT_IF_KEY:
		return has_key ? SG_OUTCOME_ENCRYPT : SG_OUTCOME_PLAIN;
	default:
		if (has_key)
			return SG_OUTCOME_ENCRYPT;
		switch (d->on_missing_key) {
		case SG_MISSING_SEND_PLAIN:	return SG_OUTCOME_PLAIN;
		case SG_MISSING_TEMPFAIL:	return SG_OUTCOME_TEMPFAIL;
		default:			return SG_OUTCOME_REJECT;
		}
	}
}

const char *
sg_outcome_name(enum sg_outcome o)
{
	switch (o) {
	case SG_OUTCOME_PASS:		return "pass";
	case SG_OUTCOME_PLAIN:		return "plain";
	case SG_OUTCOME_ENCRYPT:	return "encrypt";
	case SG_OUTCOME_REJECT:		return "reject";
	default:			return "tempfail";
	}
}

static void
decide_recipients(const struct sg_msg *msg, const struct sg_policy *pol,
		  enum sg_class cls, const struct sg_facts *facts,
		  struct outcome *oc)
{
	for (guint i = 0; i < msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);
		struct sg_decision d;
		bool has_key;
		int m;

		gboolean oaep;

		sg_policy_decide(pol, facts, r->addr, &d);
		has_key = sg_class_has_key(cls, d.methods);
		oaep = d.smime_key_transport == SG_KT_RSA_OAEP;
		g_array_append_val(oc->oaep, oaep);
		/* The enum runs from the least to the most compatible cipher. */
		if (d.smime_cipher > oc->cipher)
			oc->cipher = d.smime_cipher;
		if (d.rule != NULL && oc->rule == NULL)
			oc->rule = d.rule;
		if (d.strip_tag && oc->strip_tag == NULL)
			oc->strip_tag = d.subject_tag;
		switch (sg_pipeline_outcome(&d, has_key)) {
		case SG_OUTCOME_ENCRYPT:
			oc->n_encrypt++;
			break;
		case SG_OUTCOME_PLAIN:
		case SG_OUTCOME_PASS:
			oc->n_plain++;
			oc->n_plain_keyless += !has_key;
			break;
		default:
			m = d.on_missing_key;
			if (oc->missing[m] == NULL) {
				oc->missing[m] = g_string_new(NULL);
				oc->missing_rule[m] = d.rule;
			}
			g_string_append_printf(oc->missing[m], "%s%s",
			    oc->missing[m]->len ? ", " : "", r->addr);
			break;
		}
	}
}

/* Removes the rule's tag from the Subject. */
static void
strip_subject_tag(const struct sg_msg *msg, const struct sg_facts *facts,
		  const char *tag, struct sg_result *res)
{
	char *stripped, *value;

	if (facts->subject == NULL)
		return;
	stripped = sg_subject_strip_tag(facts->subject, tag);
	if (stripped == NULL)
		return;
	value = sg_subject_encode(stripped);
	if (sg_msg_header(msg, "Subject") != NULL)
		sg_edits_add(&res->edits, SG_HDR_CHANGE, "Subject", 1, value);
	g_free(value);
	g_free(stripped);
}

static const char *
rule_label(const char *rule)
{
	return rule != NULL ? rule : "outbound.default";
}

/* Refusals for recipients without a usable key; true when one was set. */
static bool
refuse_missing(const struct outcome *oc, struct sg_result *res)
{
	const GString *rej = oc->missing[SG_MISSING_REJECT];
	const GString *tmp = oc->missing[SG_MISSING_TEMPFAIL];

	if (rej != NULL) {
		sg_result_reply(res, SG_VERDICT_REJECT, "550", "5.7.1",
		    "encryption required by rule \"%s\"; no usable key for: %s",
		    rule_label(oc->missing_rule[SG_MISSING_REJECT]), rej->str);
		set_reason(res, "no usable key (rule %s)",
		    rule_label(oc->missing_rule[SG_MISSING_REJECT]));
		return true;
	}
	if (tmp != NULL) {
		sg_result_reply(res, SG_VERDICT_TEMPFAIL, "451", "4.7.1",
		    "encryption required by rule \"%s\"; no usable key for: %s; "
		    "try again later", rule_label(oc->missing_rule[SG_MISSING_TEMPFAIL]),
		    tmp->str);
		set_reason(res, "no usable key (rule %s)",
		    rule_label(oc->missing_rule[SG_MISSING_TEMPFAIL]));
		return true;
	}
	return false;
}

/* Parses the message; false (with a refusal in res) when it is malformed
 * or already protected is reported in *prot. */
static int
inspect_message(struct sg_msg *msg, struct sg_result *res,
		enum sg_protection *prot)
{
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	GMimeStream *stream;
	int rc;

	stream = sg_spool_stream(msg->spool, 0, -1);
	if (stream == NULL)
		return internal_error(res, SG_EIO, "spool", NULL);
	rc = sg_mime_inspect(stream, &info, &err);
	g_object_unref(stream);
	if (rc == SG_EMALFORMED) {
		sg_result_reply(res, SG_VERDICT_REJECT, "554", "5.6.0",
		    "malformed MIME message (%s); it was not sent", err.msg);
		set_reason(res, "malformed: %s", err.msg);
		return SG_OK;
	}
	if (rc < 0)
		return internal_error(res, rc, "MIME parser", &err);
	*prot = info.protection;
	return SG_OK;
}

static void
outcome_clear(struct outcome *oc)
{
	g_array_free(oc->oaep, TRUE);
	for (int i = 0; i < 3; i++)
		if (oc->missing[i] != NULL)
			g_string_free(oc->missing[i], TRUE);
}

/* An outbound transaction of one class: apply the rules, then encrypt or
 * pass, or refuse. */
static int
run_outbound(struct sg_msg *msg, const struct sg_policy *pol,
	     const struct sg_keystore *ks, enum sg_class cls,
	     struct sg_result *res)
{
	struct outcome oc = { 0 };
	struct sg_smime_rcpt *rcpts;
	struct sg_facts facts;
	enum sg_protection prot = SG_PROT_NONE;
	int rc = SG_OK;

	oc.oaep = g_array_new(FALSE, TRUE, sizeof(gboolean));
	sg_facts_from_msg(&facts, msg);
	decide_recipients(msg, pol, cls, &facts, &oc);
	res->rule = oc.rule;
	if (refuse_missing(&oc, res))
		goto out;
	if (oc.n_encrypt > 0 && oc.n_plain_keyless > 0) {
		/* Cannot happen with one class unless rules pick methods the
		 * recipients have no key for; never fall back to plain. */
		sg_result_reply(res, SG_VERDICT_REJECT, "550", "5.7.1",
		    "the policy asks for encryption for some recipients of this "
		    "message and not for others; send to them separately");
		set_reason(res, "conflicting outcomes in one transaction");
		goto out;
	}
	if (oc.strip_tag != NULL)
		strip_subject_tag(msg, &facts, oc.strip_tag, res);
	if (oc.n_encrypt == 0) {
		set_reason(res, "%s (%s)", cls == SG_CLASS_PLAIN
		    ? "no usable key; the policy allows plain"
		    : "the policy asks for no encryption", rule_label(oc.rule));
		goto out;
	}
	rc = inspect_message(msg, res, &prot);
	if (rc < 0 || res->verdict != SG_VERDICT_ACCEPT)
		goto out;
	if (prot != SG_PROT_NONE) {
		set_reason(res, "already protected (%s)",
		    sg_mime_protection_name(prot));
		goto out;
	}
	rcpts = g_new0(struct sg_smime_rcpt, msg->rcpts->len);
	for (guint i = 0; i < msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		g_ptr_array_add(res->fprs, g_strdup(r->key_fpr));
		rcpts[i].fpr = r->key_fpr;
		rcpts[i].oaep = g_array_index(oc.oaep, gboolean, i);
	}
	if (cls == SG_CLASS_SMIME)
		rc = encrypt_smime(msg, pol, ks, rcpts, oc.cipher, res);
	else
		rc = encrypt_openpgp(msg, pol, ks, res);
	g_free(rcpts);
out:
	outcome_clear(&oc);
	sg_facts_clear(&facts);
	return rc;
}

int
sg_pipeline_run(struct sg_msg *msg, const struct sg_policy *pol,
		const struct sg_keystore *ks, struct sg_result *res)
{
	enum sg_class cls = SG_CLASS_PASS;
	int rc;

	if (msg->limit_error) {
		sg_result_reply(res, SG_VERDICT_REJECT, "552", "5.3.4",
		    "message refused: %s", msg->limit_what);
		set_reason(res, "%s", msg->limit_what);
		return SG_OK;
	}
	if ((long long)sg_spool_size(msg->spool) > pol->gateway.max_message_size) {
		sg_result_reply(res, SG_VERDICT_REJECT, "552", "5.3.4",
		    "message size exceeds the limit of %lld bytes",
		    pol->gateway.max_message_size);
		set_reason(res, "message too large");
		return SG_OK;
	}
	if (msg->rcpts->len == 0)
		return SG_OK;
	rc = transaction_class(msg, pol, ks, res, &cls);
	if (rc < 0 || res->verdict != SG_VERDICT_ACCEPT)
		return rc;
	switch (cls) {
	case SG_CLASS_PASS:
		set_reason(res, "not outbound");
		return SG_OK;
	case SG_CLASS_INTERNAL:
		set_reason(res, "internal recipients");
		return SG_OK;
	default:
		return run_outbound(msg, pol, ks, cls, res);
	}
}
