/* Inbound mail for internal recipients: remove forged status headers,
 * decrypt whole-message encryption with an envelope recipient's own key,
 * and say what happened in X-Sealgate-* headers (DESIGN.md §3, §4 rule 3).
 * Plaintext is collected in a bounded buffer and used only on complete
 * success; on any failure the original is delivered. */
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
/* Each envelope recipient decrypts a message with their own key: at most
 * this many (the rest of the time goes to the MTA's retries). */
#define SG_MAX_DECRYPT_RECIPIENTS 20
/* A decrypted entity's header: one field value, and the whole block. */
#define SG_ENTITY_VALUE_MAX 4096
#define SG_ENTITY_HEADER_MAX 65536

/* A plaintext buffer that refuses to grow past its bound. */
struct bounded {
	GByteArray *buf;
	size_t max;
	bool overflow;
};

static int
bounded_write(void *ctx, const void *data, size_t len)
{
	struct bounded *b = ctx;

	if (b->buf->len + len > b->max) {
		b->overflow = true;
		return SG_ELIMIT;
	}
	g_byte_array_append(b->buf, data, (guint)len);
	return SG_OK;
}

/* Deletes every copy of a status header, whatever its letter case. */
static void
strip_forged(const struct sg_msg *msg, const char *name, struct sg_edits *ed)
{
	for (unsigned n = sg_msg_header_count(msg, name); n > 0; n--)
		sg_edits_add(ed, SG_HDR_DELETE, name, n, NULL);
}

/* What was decrypted and verified, and how it went. */
struct decryption {
	int method;             /* SG_METHOD_*, SG_NO_METHOD */
	enum sg_dec_integrity integrity;
	enum sg_dec_status status;
	enum sg_dec_reason reason;
	struct bounded plain;
	bool inline_text;       /* inline PGP: the plaintext is the text */
	struct sg_sig sig;
	int sig_method;         /* SG_METHOD_*, SG_NO_METHOD: not signed */
	GByteArray *signed_body; /* integrity=signature: what is delivered */
	bool signed_base64;      /* ... in base64 (opaque signed-data) */
};

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

static void
set_outcome(struct decryption *d, enum sg_dec_status status,
	    enum sg_dec_reason reason)
{
	d->status = status;
	d->reason = reason;
}

static enum sg_dec_reason
failure_reason(int rc)
{
	switch (rc) {
	case SG_EINTEGRITY:	return SG_DEC_INTEGRITY;
	case SG_ELIMIT:		return SG_DEC_TOO_LARGE;
	case SG_ECIPHER:	return SG_DEC_CIPHER_NOT_ALLOWED;
	case SG_EMALFORMED:	return SG_DEC_MALFORMED;
	default:		return SG_DEC_DECRYPTION_ERROR;
	}
}

/* True when a session key packet names no recipient (a hidden key id). */
static bool
has_hidden_recipient(const GPtrArray *ids)
{
	for (guint i = 0; i < ids->len; i++)
		if (strcmp(g_ptr_array_index(ids, i), "0000000000000000") == 0)
			return true;
	return false;
}

/* named: one of addr's own decryption subkeys is named by the message's
 * session key packets, or one of them hides its recipient (hidden_only:
 * only the latter). */
static int
names_recipient(const struct sg_keystore *ks, const char *addr,
		const GPtrArray *ids, bool *hidden_only, bool *named,
		struct sg_err *err)
{
	GPtrArray *mine = g_ptr_array_new_with_free_func(g_free);
	bool by_id = false;
	int rc;

	rc = sg_openpgp_decryption_subkeys(ks, addr, mine, err);
	for (guint j = 0; rc == 0 && j < mine->len && !by_id; j++)
		for (guint k = 0; k < ids->len && !by_id; k++)
			by_id = g_ascii_strcasecmp(g_ptr_array_index(mine, j),
			    g_ptr_array_index(ids, k)) == 0;
	*named = by_id || has_hidden_recipient(ids);
	*hidden_only = !by_id;
	g_ptr_array_free(mine, TRUE);
	return rc;
}

static void
free_secret(char *s)
{
	if (s != NULL) {
		memset(s, 0, strlen(s));
		g_free(s);
	}
}

/* True when the i-th envelope recipient is an earlier one again (one
 * decryption each is enough; letter case aside, the same mailbox). */
static bool
repeated_rcpt(const struct sg_msg *msg, guint i)
{
	const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

	for (guint j = 0; j < i; j++)
		if (g_ascii_strcasecmp(r->addr, ((struct sg_rcpt *)
		    g_ptr_array_index(msg->rcpts, j))->addr) == 0)
			return true;
	return false;
}

/* The session key with which addr's own secret keys alone open cipher.
 * (transfer full: *key) */
static int
recipient_session_key(const struct sg_keystore *ks, const char *addr,
		      const GPtrArray *ids, const GByteArray *cipher,
		      struct decryption *d, char **key, struct sg_err *err)
{
	struct bounded scratch = { g_byte_array_new(), d->plain.max, false };
	struct sg_writer sink = { bounded_write, &scratch };
	bool named, hidden_only;
	int rc;

	rc = names_recipient(ks, addr, ids, &hidden_only, &named, err);
	if (rc == 0 && !named)
		rc = sg_err_set(err, SG_ENOKEY, "not encrypted to %s", addr);
	if (rc == 0)
		rc = sg_openpgp_session_key_as(ks, addr, cipher->data,
		    cipher->len, &sink, key, err);
	if (scratch.overflow)
		d->plain.overflow = true;
	if (scratch.buf->len)
		memset(scratch.buf->data, 0, scratch.buf->len);
	g_byte_array_free(scratch.buf, TRUE);
	/* A hidden recipient that is not this one: not for them. */
	if (rc == SG_ECRYPTO && hidden_only && !d->plain.overflow)
		rc = sg_err_set(err, SG_ENOKEY, "not encrypted to %s", addr);
	return rc;
}

/* Every envelope recipient opens the message with their own secret keys
 * alone (whatever key ids it carries), and all must reach the same
 * session key; then the message is decrypted with that key, in a context
 * where no secret key is tried, and a signature inside is verified. */
static int
decrypt_openpgp(const struct sg_msg *msg, const struct sg_keystore *ks,
		const GByteArray *armored, struct decryption *d,
		struct sg_err *err)
{
	struct sg_writer out = { bounded_write, &d->plain };
	struct sg_openpgp_decrypted info;
	GPtrArray *ids = g_ptr_array_new_with_free_func(g_free);
	char *agreed = NULL, *key;
	int rc, integrity = SG_PGP_NONE;
	/* gpg reads the packets as sealgate's armor reader decoded them:
	 * the two never disagree on what the message is. */
	GByteArray *bin = sg_openpgp_binary(armored->data, armored->len);
	const GByteArray *cipher = bin;

	d->method = SG_METHOD_OPENPGP;
	/* The packets are read from the armor as it came (decoded once, as
	 * for gpg): packets of bin read as armor again would be another
	 * armor that gpg decodes with its own reader. */
	rc = bin != NULL ? sg_openpgp_recipients(armored->data, armored->len,
	    ids, &integrity, err) : sg_err_set(err, SG_EMALFORMED,
	    "malformed armor");
	/* Without MDC or AEAD there is nothing to decrypt: gpg would write
	 * unauthenticated plaintext before it noticed. */
	if (rc == 0 && integrity == SG_PGP_NONE)
		rc = sg_err_set(err, SG_EINTEGRITY, "no integrity protection");
	for (guint i = 0; rc == 0 && i < msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		if (repeated_rcpt(msg, i))
			continue;
		key = NULL;
		rc = recipient_session_key(ks, r->addr, ids, cipher, d, &key, err);
		if (rc == 0 && agreed != NULL && strcmp(agreed, key) != 0)
			rc = sg_err_set(err, SG_ENOKEY, "recipients would read "
			    "different messages");
		if (rc == 0 && agreed == NULL) {
			agreed = key;
			key = NULL;
		}
		free_secret(key);
	}
	if (rc == 0)
		rc = sg_openpgp_decrypt_with(ks, agreed, cipher->data,
		    cipher->len, &out, &info, &d->sig, err);
	if (rc == 0 && info.signed_inside)
		d->sig_method = SG_METHOD_OPENPGP;
	if (rc == 0)
		d->integrity = integrity == SG_PGP_AEAD ? SG_INTEGRITY_AEAD
		    : SG_INTEGRITY_MDC;
	free_secret(agreed);
	g_ptr_array_free(ids, TRUE);
	if (bin != NULL)
		g_byte_array_free(bin, TRUE);
	return rc;
}

static int
decrypt_smime(const struct sg_msg *msg, const struct sg_policy *pol,
	      const struct sg_keystore *ks, const GByteArray *der,
	      struct decryption *d, struct sg_err *err)
{
	struct sg_writer out = { bounded_write, &d->plain };
	struct sg_smime_decrypted info;
	const char **rcpts = g_new0(const char *, msg->rcpts->len + 1);
	size_t n = 0;
	int rc;

	d->method = SG_METHOD_SMIME;
	for (guint i = 0; i < msg->rcpts->len; i++)
		if (!repeated_rcpt(msg, i))
			rcpts[n++] = ((struct sg_rcpt *)
			    g_ptr_array_index(msg->rcpts, i))->addr;
	rc = sg_smime_decrypt(ks, der->data, der->len, rcpts, n,
	    pol->inbound.allow_3des, &out, &info, err);
	if (rc == 0)
		d->integrity = info.aead ? SG_INTEGRITY_AEAD : SG_INTEGRITY_NONE;
	g_free(rcpts);
	return rc;
}

/* A failure of the gateway's own means (keystore, memory, temporary
 * files), not of the message: the message waits in the MTA's queue rather
 * than reach its recipient undecrypted. */
static bool
transient(int rc)
{
	return rc == SG_EKEYSTORE || rc == SG_EIO || rc == SG_ENOMEM;
}

/* Decrypts a whole-message encryption of top into d->plain; d says how it
 * went. A transient failure (described in err) is returned instead. */
static int
decrypt(const struct sg_msg *msg, const struct sg_policy *pol,
	const struct sg_keystore *ks, GMimeObject *top, enum sg_protection prot,
	struct decryption *d, struct sg_err *err)
{
	GMimeObject *carrier = top;
	GByteArray *cipher;
	int rc = SG_OK;

	if (prot == SG_PROT_PGP_MIME) {
		GMimeMultipart *mp = GMIME_MULTIPART(top);

		carrier = g_mime_multipart_get_count(mp) == 2
		    ? g_mime_multipart_get_part(mp, 1) : NULL;
	}
	cipher = carrier != NULL ? sg_mime_part_content(carrier) : NULL;
	if (cipher == NULL || prot == SG_PROT_ENCRYPTED) {
		set_outcome(d, SG_DEC_NO, prot == SG_PROT_ENCRYPTED
		    ? SG_DEC_UNSUPPORTED : SG_DEC_MALFORMED);
		goto out;
	}
	d->inline_text = prot == SG_PROT_PGP_INLINE;
	if (msg->rcpts->len > SG_MAX_DECRYPT_RECIPIENTS) {
		set_outcome(d, SG_DEC_NO, SG_DEC_TOO_MANY_RECIPIENTS);
		goto out;
	}
	for (guint i = 0; i < msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		/* A leaver's keys are kept for audit, never used. */
		if (sg_keystore_deactivated(ks, r->addr)) {
			set_outcome(d, SG_DEC_NO, SG_DEC_DEACTIVATED);
			goto out;
		}
	}
	rc = prot == SG_PROT_SMIME ? decrypt_smime(msg, pol, ks, cipher, d, err)
	    : decrypt_openpgp(msg, ks, cipher, d, err);
	if (rc == 0)
		set_outcome(d, SG_DEC_YES, SG_DEC_NO_REASON);
	else if (transient(rc))
		goto out;
	else if (rc == SG_ENOKEY)
		set_outcome(d, SG_DEC_NO, SG_DEC_NOT_FOR_RECIPIENT);
	else
		set_outcome(d, SG_DEC_FAILED,
		    failure_reason(d->plain.overflow ? SG_ELIMIT : rc));
	rc = SG_OK;
out:
	if (cipher != NULL)
		g_byte_array_free(cipher, TRUE);
	return rc;
}

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

/* The header block of a decrypted entity, up to its empty line; *body is
 * where its body starts. NULL when it is larger than SG_ENTITY_HEADER_MAX.
 * (transfer full) */
static char *
entity_header(const guint8 *p, const guint8 *end, const guint8 **body)
{
	gssize b = sg_header_end(p, (size_t)(end - p));
	size_t len = b < 0 ? (size_t)(end - p) : (size_t)b;
	GString *hdr;

	/* Without the empty line ("\n" or "\r\n") itself. */
	if (b > 0)
		len -= b >= 2 && p[b - 2] == '\r' ? 2 : 1;
	hdr = g_string_new_len((const char *)p, (gssize)len);
	if (hdr->len > 0 && hdr->str[hdr->len - 1] != '\n')
		g_string_append_c(hdr, '\n');
	if (hdr->len > SG_ENTITY_HEADER_MAX) {
		g_string_free(hdr, TRUE);
		return NULL;
	}
	*body = b < 0 ? end : p + b;
	return g_string_free(hdr, FALSE);
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
	/* An empty plaintext's data is NULL. */
	static const guint8 nothing[1];
	const guint8 *p = d->plain.buf->len > 0 ? d->plain.buf->data : nothing;
	const guint8 *end = p + d->plain.buf->len;
	GPtrArray *extra = g_ptr_array_new_with_free_func(g_free);
	struct sg_spool *body = NULL;
	char *ctype = NULL, *hdr;
	const guint8 *b = p;
	/* CBC content vouched for by a signature: only what it covers, and
	 * the Content-Type it was checked under. */
	bool signed_only = d->integrity == SG_INTEGRITY_SIGNATURE;
	int rc = SG_OK;

	if (d->inline_text) {
		bool eight = false;

		for (const guint8 *q = p; q < end && !eight; q++)
			eight = *q >= 0x80;
		ctype = g_strdup(sg_msg_header(msg, "Content-Type")
		    ? sg_msg_header(msg, "Content-Type")
		    : "text/plain; charset=us-ascii");
		g_ptr_array_add(extra, g_strdup("Content-Transfer-Encoding"));
		g_ptr_array_add(extra, g_strdup(eight ? "8bit" : "7bit"));
	} else {
		hdr = entity_header(p, end, &b);
		rc = hdr != NULL ? entity_fields(hdr, signed_only, &ctype, extra)
		    : SG_EMALFORMED;
		g_free(hdr);
		if (ctype == NULL)
			ctype = g_strdup("text/plain; charset=us-ascii");
	}
	if (d->signed_body != NULL) {
		b = d->signed_body->data;
		end = b + d->signed_body->len;
		if (d->signed_base64) {
			g_ptr_array_add(extra, g_strdup("Content-Transfer-Encoding"));
			g_ptr_array_add(extra, g_strdup("base64"));
		}
	}
	g_ptr_array_add(extra, NULL);
	if (rc == 0)
		rc = sg_spool_new(pol->gateway.spool_dir, SG_SPOOL_MEM_LIMIT, &body);
	if (rc == 0)
		rc = sg_spool_write_crlf(body, b, (size_t)(end - b));
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

/* The top-level entity: Content-* fields, empty line, body. */
static GByteArray *
top_entity(const struct sg_msg *msg)
{
	GString *head = sg_rewrite_content_headers(msg);
	GByteArray *out = g_byte_array_new();
	char buf[65536];
	off_t off = msg->body_offset;
	size_t n;

	g_byte_array_append(out, (guint8 *)head->str, (guint)head->len);
	g_string_free(head, TRUE);
	while (sg_spool_read_at(msg->spool, off, buf, sizeof(buf), &n) == 0 &&
	    n > 0) {
		g_byte_array_append(out, (guint8 *)buf, (guint)n);
		off += (off_t)n;
	}
	return out;
}

/* The plaintext with every bare LF made CRLF: what a signature inside
 * was computed over (RFC 5751 canonical form). */
static void
canonicalise(struct bounded *plain)
{
	GByteArray *out = g_byte_array_sized_new(plain->buf->len + 64);

	for (guint i = 0; i < plain->buf->len; i++) {
		guint8 c = plain->buf->data[i];

		if (c == '\n' && (i == 0 || plain->buf->data[i - 1] != '\r'))
			g_byte_array_append(out, (const guint8 *)"\r", 1);
		g_byte_array_append(out, &c, 1);
	}
	if (plain->buf->len > 0)
		memset(plain->buf->data, 0, plain->buf->len);
	g_byte_array_free(plain->buf, TRUE);
	plain->buf = out;
}

/* After a successful decryption: the signature inside, and whether the
 * result may be used at all. */
static void
check_decrypted(const struct sg_msg *msg, const struct sg_policy *pol,
		const struct sg_keystore *ks, struct decryption *d)
{
	GByteArray *unwrapped = NULL;
	struct sg_claims claims;

	sg_inbound_claims(msg, pol, &claims);
	if (d->sig_method != SG_NO_METHOD) {
		sg_inbound_check_signer(&claims, &d->sig);
	} else if ((pol->inbound.verify || (pol->inbound.require_integrity &&
	    d->integrity == SG_INTEGRITY_NONE)) && !d->inline_text) {
		canonicalise(&d->plain);
		sg_inbound_verify(ks, d->plain.buf->data, d->plain.buf->len,
		    &claims, &d->sig, &d->sig_method, &unwrapped);
		if (unwrapped != NULL)
			g_byte_array_free(unwrapped, TRUE);
	}
	/* CBC S/MIME has no integrity: anyone can change blocks of it (the
	 * EFAIL gadgets). Only a valid signature that covers the whole
	 * decrypted entity makes up for it, unless the policy accepts none. */
	if (d->integrity != SG_INTEGRITY_NONE || !pol->inbound.require_integrity)
		return;
	if (d->sig.status == SG_SIG_VALID && d->sig_method != SG_NO_METHOD &&
	    sg_inbound_signed_body(d->plain.buf->data, d->plain.buf->len,
	    &d->signed_body, &d->signed_base64))
		d->integrity = SG_INTEGRITY_SIGNATURE;
	else
		set_outcome(d, SG_DEC_FAILED, SG_DEC_NO_INTEGRITY);
}

static GMimeMessage *
parse(struct sg_msg *msg)
{
	GMimeStream *s = sg_spool_stream(msg->spool, 0, -1);
	GMimeParser *parser;
	GMimeMessage *m;

	if (s == NULL)
		return NULL;
	parser = g_mime_parser_new_with_stream(s);
	m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(s);
	return m;
}

int
sg_inbound_run(struct sg_msg *msg, const struct sg_policy *pol,
	       const struct sg_keystore *ks, struct sg_result *res)
{
	struct decryption d = { .status = SG_DEC_NO, .reason = SG_DEC_NOT_ENCRYPTED,
	    .method = SG_NO_METHOD, .sig_method = SG_NO_METHOD };
	struct sg_mime_info info = { 0 };
	struct sg_err err = { 0 };
	struct sg_claims claims;
	GByteArray *entity = NULL, *unwrapped = NULL;
	GMimeMessage *m = NULL;
	GMimeStream *s;
	int rc = SG_OK;

	strip_forged(msg, HDR_DECRYPTED, &res->edits);
	strip_forged(msg, HDR_SIGNATURE, &res->edits);
	sg_sig_init(&d.sig);
	d.plain.buf = g_byte_array_new();
	d.plain.max = (size_t)pol->inbound.max_decrypted_size;

	s = sg_spool_stream(msg->spool, 0, -1);
	rc = s != NULL ? sg_mime_inspect(s, &info, &err) : SG_EIO;
	if (s != NULL)
		g_object_unref(s);
	if (rc == SG_EMALFORMED || rc == SG_ELIMIT) {
		/* Too deep to judge: delivered as it came, and said so. */
		if (rc == SG_ELIMIT)
			set_outcome(&d, SG_DEC_FAILED, SG_DEC_TOO_DEEP);
		else
			set_outcome(&d, SG_DEC_NO, SG_DEC_MALFORMED);
		rc = SG_OK;
		goto status;
	}
	if (rc < 0 || (m = parse(msg)) == NULL) {
		rc = sg_result_internal(res, rc < 0 ? rc : SG_EIO, "MIME parser",
		    &err);
		goto out;
	}
	if (info.protection == SG_PROT_NONE) {
		if (sg_mime_has_nested_encryption(g_mime_message_get_mime_part(m), 1))
			d.reason = SG_DEC_PARTIAL_ENCRYPTION;
		if (!pol->inbound.verify)
			goto status;
		entity = top_entity(msg);
		sg_inbound_claims(msg, pol, &claims);
		sg_inbound_verify(ks, entity->data, entity->len, &claims, &d.sig,
		    &d.sig_method, &unwrapped);
		if (unwrapped != NULL) {
			/* Opaque signed-data: deliver what was signed. */
			g_byte_array_free(d.plain.buf, TRUE);
			d.plain.buf = unwrapped;
			rc = apply_entity(msg, pol, &d, res);
			if (rc < 0 && rc != SG_EMALFORMED) {
				rc = sg_result_internal(res, rc, "spool", NULL);
				goto out;
			}
			/* A header no MTA could carry: delivered as it came. */
			if (rc == 0)
				res->action = "unwrap";
			rc = SG_OK;
		}
		goto status;
	}
	d.reason = SG_DEC_NO_REASON;
	if (!pol->inbound.decrypt) {
		d.reason = SG_DEC_DISABLED;
		goto status;
	}
	rc = decrypt(msg, pol, ks, g_mime_message_get_mime_part(m),
	    info.protection, &d, &err);
	if (rc < 0) {
		rc = sg_result_internal(res, rc, "decryption", &err);
		goto out;
	}
	if (d.status == SG_DEC_YES)
		check_decrypted(msg, pol, ks, &d);
	if (d.status == SG_DEC_YES) {
		rc = apply_entity(msg, pol, &d, res);
		if (rc == SG_EMALFORMED) {
			set_outcome(&d, SG_DEC_FAILED, SG_DEC_MALFORMED);
			rc = SG_OK;
		} else if (rc < 0) {
			rc = sg_result_internal(res, rc, "spool", NULL);
			goto out;
		} else {
			res->action = "decrypt";
			res->method = sg_method_name(d.method);
		}
	}
status:
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
	/* The plaintext is gone here whatever happened; never logged. */
	if (d.plain.buf->len > 0)
		memset(d.plain.buf->data, 0, d.plain.buf->len);
	g_byte_array_free(d.plain.buf, TRUE);
	if (d.signed_body != NULL) {
		memset(d.signed_body->data, 0, d.signed_body->len);
		g_byte_array_free(d.signed_body, TRUE);
	}
	if (entity != NULL)
		g_byte_array_free(entity, TRUE);
	sg_sig_clear(&d.sig);
	if (m != NULL)
		g_object_unref(m);
	return rc;
}
