/* Inbound mail for internal recipients: remove forged status headers,
 * decrypt whole-message encryption with an envelope recipient's own key,
 * and say what happened in X-Sealgate-* headers (DESIGN.md §3, §4 rule 3).
 * The message is parsed once; ciphertext and signed bytes are read from
 * the spool where they lie. Plaintext goes to a bounded, nameless 0600
 * spool file and is used only on complete success; on any failure the
 * original is delivered, and when a spool fails the MTA keeps the mail.
 * The decryption itself is in inbound_decrypt.c. */
#define _GNU_SOURCE
#include <string.h>

#include <gmime/gmime.h>

#include "inbound.h"
#include "pipeline_int.h"
#include "sealgate/edits.h"
#include "sealgate/mime.h"
#include "sealgate/openpgp.h"
#include "sealgate/rewrite.h"
#include "sealgate/rules.h"
#include "sealgate/smime.h"

#define HDR_DECRYPTED "X-Sealgate-Decrypted"
#define HDR_SIGNATURE "X-Sealgate-Signature"
/* A decrypted entity's header: one field value, and the whole block. */
#define SG_ENTITY_VALUE_MAX 4096
#define SG_ENTITY_HEADER_MAX 65536

/* Deletes every copy of a status header, whatever its letter case. */
static void
strip_forged(const struct sg_msg *msg, const char *name, struct sg_edits *ed)
{
	for (unsigned n = sg_msg_header_count(msg, name); n > 0; n--)
		sg_edits_add(ed, SG_HDR_DELETE, name, n, NULL);
}

/* The words of X-Sealgate-Decrypted and of the log line: the one place
 * where the outcome of a decryption becomes text. */
static const char *const status_words[] = {
	[SG_DEC_NO] = "no",
	[SG_DEC_YES] = "yes",
	[SG_DEC_FAILED] = "failed",
};

static const char *const reason_words[] = {
	[SG_DEC_NO_REASON] = NULL,
	[SG_DEC_NOT_ENCRYPTED] = "not-encrypted",
	[SG_DEC_NOT_FOR_RECIPIENT] = "not-for-recipient",
	[SG_DEC_PARTIAL_ENCRYPTION] = "partial-encryption",
	[SG_DEC_MALFORMED] = "malformed",
	[SG_DEC_DISABLED] = "disabled",
	[SG_DEC_DEACTIVATED] = "deactivated",
	[SG_DEC_TOO_MANY_RECIPIENTS] = "too-many-recipients",
	[SG_DEC_UNSUPPORTED] = "unsupported",
	[SG_DEC_INTEGRITY] = "integrity",
	[SG_DEC_TOO_LARGE] = "too-large",
	[SG_DEC_CIPHER_NOT_ALLOWED] = "cipher-not-allowed",
	[SG_DEC_NO_INTEGRITY] = "no-integrity",
	[SG_DEC_DECRYPTION_ERROR] = "decryption-error",
	[SG_DEC_TOO_DEEP] = "too-deep",
};

static const char *const integrity_words[] = {
	[SG_INTEGRITY_NONE] = "none",
	[SG_INTEGRITY_MDC] = "mdc",
	[SG_INTEGRITY_AEAD] = "aead",
	[SG_INTEGRITY_SIGNATURE] = "signature",
};

/* A header value from inside encrypted mail: no control characters but
 * tab (a CR or NUL would end or cut the header where the MTA writes it),
 * and not longer than an MTA takes without refusing the edit. */
static bool
value_ok(const char *v)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)v; *p; p++, n++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	return n <= SG_ENTITY_VALUE_MAX;
}

/* The header block of the decrypted entity in sp, up to its empty line
 * (*header NULL when it is larger than SG_ENTITY_HEADER_MAX), and where
 * its body starts. Reads no more of sp than a header may take.
 * (transfer full: *header) */
static int
entity_header(struct sg_spool *sp, char **header, gint64 *body)
{
	const size_t want = SG_ENTITY_HEADER_MAX + 3;
	guint8 *p = g_malloc(want);
	size_t got = 0, n, len;
	GString *hdr;
	gssize b;
	int rc;

	*header = NULL;
	while ((rc = sg_spool_read_at(sp, (off_t)got, p + got, want - got,
	    &n)) == 0 && n > 0 && (got += n) < want)
		;
	b = sg_header_end(p, got);
	/* No empty line where a header that may be used would have one. */
	if (rc < 0 || (b < 0 && got == want))
		goto out;
	len = b < 0 ? got : (size_t)b;
	/* Without the empty line ("\n" or "\r\n") itself. */
	if (b > 0)
		len -= b >= 2 && p[b - 2] == '\r' ? 2 : 1;
	hdr = g_string_new_len((const char *)p, (gssize)len);
	if (hdr->len > 0 && hdr->str[hdr->len - 1] != '\n')
		g_string_append_c(hdr, '\n');
	if (hdr->len > SG_ENTITY_HEADER_MAX) {
		memset(hdr->str, 0, hdr->len);
		g_string_free(hdr, TRUE);
		goto out;
	}
	*header = g_string_free(hdr, FALSE);
	*body = b < 0 ? (gint64)got : b;
out:
	memset(p, 0, got);
	g_free(p);
	return rc;
}

/* Bytes from off to the end of from, appended to to with CRLF line
 * ends. */
static int
copy_crlf(struct sg_spool *from, gint64 off, struct sg_spool *to)
{
	char buf[65536];
	size_t n;
	int rc;

	while ((rc = sg_spool_read_at(from, (off_t)off, buf, sizeof(buf),
	    &n)) == 0 && n > 0) {
		rc = sg_spool_write_crlf(to, buf, n);
		if (rc < 0)
			break;
		off += (gint64)n;
	}
	return rc;
}

static int
has_8bit(struct sg_spool *sp, bool *eight)
{
	guint8 buf[65536];
	off_t off = 0;
	size_t n;
	int rc;

	*eight = false;
	while (!*eight && (rc = sg_spool_read_at(sp, off, buf, sizeof(buf),
	    &n)) == 0 && n > 0) {
		for (size_t i = 0; i < n && !*eight; i++)
			*eight = buf[i] >= 0x80;
		off += (off_t)n;
	}
	return *eight ? SG_OK : rc;
}

/* The Content-* fields of a decrypted entity's header: the Content-Type to
 * *ctype, the others (unless signed_only) as name, value pairs to extra.
 * SG_EMALFORMED for anything a header cannot carry or that two readers
 * could take differently: a line that is no field, an invalid name or
 * value, a Content-* field twice. */
static int
entity_fields(const char *hdr, bool signed_only, char **ctype,
	      GPtrArray *extra)
{
	char *unfolded = sg_header_unfold(hdr);
	char **lines = g_strsplit(unfolded, "\n", -1);
	GPtrArray *seen = g_ptr_array_new_with_free_func(g_free);
	int rc = SG_OK;

	for (char **l = lines; *l != NULL && rc == 0; l++) {
		char *colon = strchr(*l, ':'), *name, *value;

		if (**l == '\0')
			continue;
		if (colon == NULL) {
			rc = SG_EMALFORMED;
			break;
		}
		name = g_strstrip(g_strndup(*l, (gsize)(colon - *l)));
		value = g_strstrip(g_strdup(colon + 1));
		g_strdelimit(value, "\r", ' ');
		if (!sg_header_name_ok(name) || !value_ok(value))
			rc = SG_EMALFORMED;
		if (rc == 0 && g_ascii_strncasecmp(name, "Content-", 8) == 0) {
			for (guint i = 0; i < seen->len && rc == 0; i++)
				if (g_ascii_strcasecmp(name,
				    g_ptr_array_index(seen, i)) == 0)
					rc = SG_EMALFORMED;
			g_ptr_array_add(seen, g_strdup(name));
		}
		if (rc == 0 && g_ascii_strcasecmp(name, "Content-Type") == 0) {
			*ctype = value;
			g_free(name);
		} else if (rc == 0 && !signed_only &&
		    g_ascii_strncasecmp(name, "Content-", 8) == 0) {
			g_ptr_array_add(extra, name);
			g_ptr_array_add(extra, value);
		} else {
			g_free(name);
			g_free(value);
		}
	}
	g_ptr_array_free(seen, TRUE);
	g_strfreev(lines);
	g_free(unfolded);
	return rc;
}

/* Applies the decrypted entity: its Content-* fields replace the
 * message's, its body replaces the body. SG_EMALFORMED when its header
 * is not one the MTA can carry as it is (entity_fields). */
static int
apply_entity(const struct sg_msg *msg, const struct sg_policy *pol,
	     struct decryption *d, struct sg_result *res)
{
	GPtrArray *extra = g_ptr_array_new_with_free_func(g_free);
	struct sg_spool *body = NULL, *src = d->plain.spool;
	gint64 from = d->inline_text ? 0 : d->body_off;
	char *ctype = NULL;
	/* CBC content vouched for by a signature: only what it covers, and
	 * the Content-Type it was checked under. */
	bool signed_only = d->integrity == SG_INTEGRITY_SIGNATURE;
	int rc = SG_OK;

	if (d->inline_text) {
		bool eight = false;

		rc = has_8bit(src, &eight);
		ctype = g_strdup(sg_msg_header(msg, "Content-Type")
		    ? sg_msg_header(msg, "Content-Type")
		    : "text/plain; charset=us-ascii");
		g_ptr_array_add(extra, g_strdup("Content-Transfer-Encoding"));
		g_ptr_array_add(extra, g_strdup(eight ? "8bit" : "7bit"));
	} else {
		rc = d->header != NULL ? entity_fields(d->header, signed_only,
		    &ctype, extra) : SG_EMALFORMED;
		if (ctype == NULL)
			ctype = g_strdup("text/plain; charset=us-ascii");
	}
	if (d->signed_body != NULL) {
		src = d->signed_body;
		from = 0;
		if (d->signed_base64) {
			g_ptr_array_add(extra, g_strdup("Content-Transfer-Encoding"));
			g_ptr_array_add(extra, g_strdup("base64"));
		}
	}
	g_ptr_array_add(extra, NULL);
	if (rc == 0)
		rc = sg_spool_new(pol->gateway.spool_dir, SG_SPOOL_MEM_LIMIT, &body);
	if (rc == 0)
		rc = copy_crlf(src, from, body);
	if (rc == 0) {
		sg_rewrite_content_edits(msg, ctype,
		    (const char *const *)extra->pdata, &res->edits);
		res->edits.body = body;
		body = NULL;
	}
	sg_spool_free(body);
	g_free(ctype);
	g_ptr_array_free(extra, TRUE);
	return rc;
}

static void
add_status(struct decryption *d, struct sg_result *res)
{
	GString *v = g_string_new(status_words[d->status]);

	if (d->method != SG_NO_METHOD && d->status != SG_DEC_NO)
		g_string_append_printf(v, "; method=%s", sg_method_name(d->method));
	if (d->status == SG_DEC_YES)
		g_string_append_printf(v, "; integrity=%s",
		    integrity_words[d->integrity]);
	if (reason_words[d->reason] != NULL)
		g_string_append_printf(v, "; reason=%s", reason_words[d->reason]);
	sg_edits_add(&res->edits, SG_HDR_ADD, HDR_DECRYPTED, 0, v->str);
	g_string_free(v, TRUE);
}

/* A value from a key, certificate or library, safe in a header: printable
 * ASCII, no ';' (it separates the fields), at most 128 characters.
 * (transfer full) */
static char *
sanitise(const char *in)
{
	GString *s = g_string_new(NULL);

	for (const char *p = in; *p && s->len < 128; p++)
		g_string_append_c(s, *p == ';' ? ',' : (*p >= ' ' && *p < 0x7f)
		    ? *p : '_');
	return g_string_free(s, FALSE);
}

/* The signer address that matched From (the first one otherwise). */
static const char *
signer_addr(const struct sg_sig *sig, const char *from)
{
	for (guint i = 0; from && i < sig->addrs->len; i++)
		if (strcasestr(from, g_ptr_array_index(sig->addrs, i)) != NULL)
			return g_ptr_array_index(sig->addrs, i);
	return sig->addrs->len ? g_ptr_array_index(sig->addrs, 0) : NULL;
}

static void
add_signature_status(const struct decryption *d, const char *from,
		     struct sg_result *res)
{
	const struct sg_sig *sig = &d->sig;
	GString *v = g_string_new(sg_sig_status_name(sig->status));
	char *clean;

	if (d->sig_method != SG_NO_METHOD && sig->status != SG_SIG_NONE)
		g_string_append_printf(v, "; method=%s",
		    sg_method_name(d->sig_method));
	if (sig->status == SG_SIG_VALID && signer_addr(sig, from) != NULL) {
		clean = sanitise(signer_addr(sig, from));
		g_string_append_printf(v, "; signer=%s", clean);
		g_free(clean);
	}
	if (*sig->fpr) {
		clean = sanitise(sig->fpr);
		g_string_append_printf(v, "; key=%s", clean);
		g_free(clean);
	}
	if (sig->status != SG_SIG_VALID && sig->status != SG_SIG_NONE &&
	    *sig->reason) {
		clean = sanitise(sig->reason);
		g_string_append_printf(v, "; reason=%s", clean);
		g_free(clean);
	}
	sg_edits_add(&res->edits, SG_HDR_ADD, HDR_SIGNATURE, 0, v->str);
	g_string_free(v, TRUE);
}

/* [decrypted] / [signed OK] / [signature INVALID] before the Subject. */
static void
tag_subject(const struct sg_msg *msg, const struct decryption *d,
	    struct sg_result *res)
{
	const char *subject = sg_msg_header(msg, "Subject");
	GString *tags = g_string_new(NULL);
	char *decoded, *value;

	if (d->status == SG_DEC_YES)
		g_string_append(tags, "[decrypted] ");
	if (d->sig.status == SG_SIG_VALID)
		g_string_append(tags, "[signed OK] ");
	else if (d->sig.status == SG_SIG_INVALID ||
	    d->sig.status == SG_SIG_SIGNER_MISMATCH ||
	    d->sig.status == SG_SIG_REVOKED || d->sig.status == SG_SIG_EXPIRED)
		g_string_append(tags, "[signature INVALID] ");
	if (tags->len > 0) {
		decoded = subject ? sg_header_decode(subject) : g_strdup("");
		g_string_append(tags, decoded);
		value = sg_subject_encode(tags->str);
		if (subject != NULL)
			sg_edits_add(&res->edits, SG_HDR_CHANGE, "Subject", 1, value);
		else
			sg_edits_add(&res->edits, SG_HDR_ADD, "Subject", 0, value);
		g_free(value);
		g_free(decoded);
	}
	g_string_free(tags, TRUE);
}

/* The decrypted entity as sg_inbound_verify takes it: its header block
 * as parsed, its body from the plaintext spool. */
static int
plain_entity(const struct decryption *d, struct sg_entity *e)
{
	GMimeStream *h = sg_spool_stream(d->plain.spool, 0, d->body_off);
	GMimeParser *parser;

	e->obj = NULL;
	e->body = sg_spool_stream(d->plain.spool, d->body_off, -1);
	if (h == NULL || e->body == NULL) {
		if (h != NULL)
			g_object_unref(h);
		return SG_EIO;
	}
	parser = g_mime_parser_new_with_stream(h);
	e->obj = g_mime_parser_construct_part(parser, NULL);
	g_object_unref(parser);
	g_object_unref(h);
	return SG_OK;
}

static void
entity_clear(struct sg_entity *e)
{
	g_clear_object(&e->obj);
	g_clear_object(&e->body);
}

/* After a successful decryption: the signature inside, and whether the
 * result may be used at all. Negative when a spool fails. */
static int
check_decrypted(const struct sg_msg *msg, const struct sg_policy *pol,
		const struct sg_keystore *ks, struct decryption *d)
{
	const char *dir = pol->gateway.spool_dir;
	struct sg_entity e = { NULL, NULL };
	struct sg_claims claims;
	bool covered = false;
	int rc = SG_OK;

	sg_inbound_claims(msg, pol, &claims);
	if (d->sig_method != SG_NO_METHOD) {
		sg_inbound_check_signer(&claims, &d->sig);
	} else if ((pol->inbound.verify || (pol->inbound.require_integrity &&
	    d->integrity == SG_INTEGRITY_NONE)) && !d->inline_text) {
		/* The plaintext is in canonical form (CRLF), as a signature
		 * inside was computed (RFC 5751). */
		rc = plain_entity(d, &e);
		if (rc == 0)
			rc = sg_inbound_verify(ks, &e, &claims, dir, &d->sig,
			    &d->sig_method, NULL);
	}
	/* CBC S/MIME has no integrity: anyone can change blocks of it (the
	 * EFAIL gadgets). Only a valid signature that covers the whole
	 * decrypted entity makes up for it, unless the policy accepts none. */
	if (rc < 0 || d->integrity != SG_INTEGRITY_NONE ||
	    !pol->inbound.require_integrity)
		goto out;
	if (d->sig.status == SG_SIG_VALID && d->sig_method != SG_NO_METHOD &&
	    e.body != NULL) {
		rc = sg_spool_new_secret(dir, &d->signed_body);
		if (rc == 0)
			rc = sg_inbound_signed_body(&e, dir, d->signed_body,
			    &covered, &d->signed_base64);
	}
	if (rc == 0 && covered) {
		d->integrity = SG_INTEGRITY_SIGNATURE;
	} else if (rc == 0) {
		sg_decryption_outcome(d, SG_DEC_FAILED, SG_DEC_NO_INTEGRITY);
		sg_spool_free(d->signed_body);
		d->signed_body = NULL;
	}
out:
	entity_clear(&e);
	return rc;
}

/* A message that is not encrypted: its signature, and opaque signed-data
 * unwrapped so that filters behind the gateway see what was signed. */
static int
verify_message(const struct sg_msg *msg, const struct sg_policy *pol,
	       const struct sg_keystore *ks, GMimeObject *top,
	       struct decryption *d, struct sg_result *res)
{
	struct sg_entity e = { top, sg_spool_stream(msg->spool,
	    msg->body_offset, -1) };
	struct sg_claims claims;
	int rc;

	if (e.body == NULL)
		return sg_result_internal(res, SG_EIO, "spool", NULL);
	sg_inbound_claims(msg, pol, &claims);
	rc = sg_inbound_verify(ks, &e, &claims, pol->gateway.spool_dir, &d->sig,
	    &d->sig_method, &d->plain.spool);
	g_object_unref(e.body);
	if (rc == 0 && d->plain.spool != NULL)
		rc = entity_header(d->plain.spool, &d->header, &d->body_off);
	/* Opaque signed-data: deliver what was signed, unless its header is
	 * not one the MTA could carry (then as it came). */
	if (rc == 0 && d->plain.spool != NULL) {
		rc = apply_entity(msg, pol, d, res);
		if (rc == 0)
			res->action = "unwrap";
		if (rc == SG_EMALFORMED)
			rc = SG_OK;
	}
	return rc < 0 ? sg_result_internal(res, rc, "spool", NULL) : SG_OK;
}

int
sg_inbound_run(struct sg_msg *msg, const struct sg_policy *pol,
	       const struct sg_keystore *ks, struct sg_progress *progress,
	       struct sg_result *res)
{
	struct decryption d = { .status = SG_DEC_NO, .reason = SG_DEC_NOT_ENCRYPTED,
	    .method = SG_NO_METHOD, .sig_method = SG_NO_METHOD };
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	GMimeMessage *m = NULL;
	GMimeObject *top;
	GMimeStream *s;
	int rc = SG_OK;

	strip_forged(msg, HDR_DECRYPTED, &res->edits);
	strip_forged(msg, HDR_SIGNATURE, &res->edits);
	sg_sig_init(&d.sig);
	d.plain.max = (size_t)pol->inbound.max_decrypted_size;
	d.plain.progress = progress;

	/* The one parse of the message; its parts stay in the spool. */
	s = sg_spool_stream(msg->spool, 0, -1);
	rc = s != NULL ? sg_mime_inspect(s, &info, &m, &err) : SG_EIO;
	if (s != NULL)
		g_object_unref(s);
	if (rc == SG_EMALFORMED || rc == SG_ELIMIT) {
		/* Too deep to judge: delivered as it came, and said so. */
		if (rc == SG_ELIMIT)
			sg_decryption_outcome(&d, SG_DEC_FAILED, SG_DEC_TOO_DEEP);
		else
			sg_decryption_outcome(&d, SG_DEC_NO, SG_DEC_MALFORMED);
		rc = SG_OK;
		goto status;
	}
	if (rc < 0) {
		rc = sg_result_internal(res, rc, "MIME parser", &err);
		goto out;
	}
	top = g_mime_message_get_mime_part(m);
	if (info.protection == SG_PROT_NONE) {
		if (sg_mime_has_nested_encryption(top, 1))
			d.reason = SG_DEC_PARTIAL_ENCRYPTION;
		if (pol->inbound.verify)
			rc = verify_message(msg, pol, ks, top, &d, res);
		if (rc < 0)
			goto out;
		goto status;
	}
	d.reason = SG_DEC_NO_REASON;
	if (!pol->inbound.decrypt) {
		d.reason = SG_DEC_DISABLED;
		goto status;
	}
	rc = sg_inbound_decrypt(msg, pol, ks, top, info.protection, &d, &err);
	if (rc == 0 && d.status == SG_DEC_YES && !d.inline_text) {
		rc = entity_header(d.plain.spool, &d.header, &d.body_off);
		if (rc == 0 && d.header == NULL)
			sg_decryption_outcome(&d, SG_DEC_FAILED, SG_DEC_MALFORMED);
	}
	if (rc == 0 && d.status == SG_DEC_YES)
		rc = check_decrypted(msg, pol, ks, &d);
	if (rc == 0 && d.status == SG_DEC_YES) {
		rc = apply_entity(msg, pol, &d, res);
		if (rc == SG_EMALFORMED) {
			sg_decryption_outcome(&d, SG_DEC_FAILED, SG_DEC_MALFORMED);
			rc = SG_OK;
		} else if (rc == 0) {
			res->action = "decrypt";
			res->method = sg_method_name(d.method);
		}
	}
	if (rc < 0) {
		rc = sg_result_internal(res, rc, "decryption", &err);
		goto out;
	}
status:
	res->decryption = status_words[d.status];
	res->decryption_reason = reason_words[d.reason];
	if (pol->inbound.verify)
		res->signature = sg_sig_status_name(d.sig.status);
	sg_inbound_record_caps(ks, &d.sig, d.sig_method, res);
	add_status(&d, res);
	if (pol->inbound.verify)
		add_signature_status(&d, sg_msg_header(msg, "From"), res);
	if (pol->inbound.subject_tags)
		tag_subject(msg, &d, res);
	sg_result_reason(res, "inbound: decrypted %s%s%s, signature %s",
	    status_words[d.status], reason_words[d.reason] ? ", " : "",
	    reason_words[d.reason] ? reason_words[d.reason] : "",
	    sg_sig_status_name(d.sig.status));
out:
	/* The plaintext is gone here whatever happened (its file truncated
	 * and closed); never logged. */
	sg_spool_free(d.plain.spool);
	sg_spool_free(d.signed_body);
	sg_inbound_free_secret(d.header);
	sg_sig_clear(&d.sig);
	if (m != NULL)
		g_object_unref(m);
	return rc;
}
