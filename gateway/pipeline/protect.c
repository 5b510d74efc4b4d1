/* Building the protected body: S/MIME or OpenPGP signing (RFC 1847
 * multipart/signed), encryption (RFC 3156 PGP/MIME, S/MIME pkcs7-mime), or
 * both, streamed from and to spools. */
#include <string.h>

#include <gmime/gmime.h>

#include "pipeline_int.h"
#include "sealgate/mime.h"
#include "sealgate/openpgp.h"
#include "sealgate/rewrite.h"
#include "sealgate/smime.h"
#include "sealgate/smimecaps.h"

/* Reader over an entity: a header block in memory, then spool bytes. */
struct entity_reader {
	GString *head;
	size_t head_pos;
	struct sg_spool *spool;
	off_t pos;
	struct sg_progress *progress;
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
	if (rc == 0) {
		er->pos += (off_t)*nread;
		sg_progress_add(er->progress, *nread);
	}
	return rc;
}

/* The body being built, and the entity it protects. */
struct job {
	struct sg_msg *msg;
	const struct sg_policy *pol;
	const struct sg_keystore *ks;
	const struct sg_plan *plan;
	struct sg_progress *progress;
	struct sg_result *res;
	struct sg_spool *body;     /* the new body */
	char *ctype;               /* its Content-Type */
	GMimeStream *in;           /* what sign() signs */
	struct sg_err err;
};

/* Reads j->in. */
static int
stream_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct job *j = ctx;
	ssize_t n;

	n = g_mime_stream_read(j->in, buf, len);
	*nread = n > 0 ? (size_t)n : 0;
	sg_progress_add(j->progress, *nread);
	return n < 0 ? SG_EIO : SG_OK;
}

/* Writes to j->body. */
static int
body_write(void *ctx, const void *buf, size_t len)
{
	struct job *j = ctx;

	sg_progress_add(j->progress, len);
	return sg_spool_write_crlf(j->body, buf, len);
}

/* A header field as a CRLF block ending in the empty line. */
static GString *
header_block(const char *name, const char *value)
{
	GString *s = g_string_new(NULL);

	g_string_append_printf(s, "%s: ", name);
	for (const char *p = value; *p; p++) {
		if (*p == '\n')
			g_string_append_c(s, '\r');
		g_string_append_c(s, *p);
	}
	g_string_append(s, "\r\n\r\n");
	return s;
}

static int
new_body(struct job *j)
{
	return sg_spool_new(j->pol->gateway.spool_dir, SG_SPOOL_MEM_LIMIT,
	    &j->body);
}

/* The original entity as a seekable stream: Content-* fields + body. */
static GMimeStream *
original_entity(struct sg_msg *msg)
{
	GString *head = sg_rewrite_content_headers(msg);
	GMimeStream *cat = g_mime_stream_cat_new();
	GMimeStream *h = g_mime_stream_mem_new_with_buffer(head->str, head->len);
	GMimeStream *b = sg_spool_stream(msg->spool, msg->body_offset, -1);

	g_string_free(head, TRUE);
	if (b == NULL) {
		g_object_unref(h);
		g_object_unref(cat);
		return NULL;
	}
	g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), h);
	g_mime_stream_cat_add_source(GMIME_STREAM_CAT(cat), b);
	g_object_unref(h);
	g_object_unref(b);
	return cat;
}

static int
copy_stream(GMimeStream *from, struct sg_spool *to)
{
	char buf[65536];
	ssize_t n;
	int rc = SG_OK;

	while (rc == 0 && (n = g_mime_stream_read(from, buf, sizeof(buf))) > 0)
		rc = sg_spool_write(to, buf, (size_t)n);
	return rc == 0 && n < 0 ? SG_EIO : rc;
}

/* RFC 1847 multipart/signed into j->body: the entity made 7-bit safe,
 * then the detached signature of exactly those bytes. */
static int
sign(struct job *j, int method)
{
	const bool pgp = method == SG_METHOD_OPENPGP;
	struct sg_writer out = { body_write, j };
	struct sg_reader in = { stream_read, j };
	GMimeStream *entity = original_entity(j->msg), *e7 = NULL;
	char boundary[64], micalg[32] = "sha-256", *text;
	bool changed = false;
	int rc;

	if (entity == NULL)
		return sg_err_set(&j->err, SG_EIO, "cannot read the spool");
	e7 = sg_mime_entity_7bit(entity, &changed, &j->err);
	g_object_unref(entity);
	if (e7 == NULL)
		return j->err.code ? j->err.code : SG_EIO;
	rc = new_body(j);
	if (rc < 0)
		goto out;
	j->in = e7;
	sg_mime_boundary(boundary, sizeof(boundary));
	text = g_strdup_printf("This is a cryptographically signed message in "
	    "MIME format.\r\n\r\n--%s\r\n", boundary);
	rc = sg_spool_puts(j->body, text);
	g_free(text);
	if (rc == 0)
		rc = copy_stream(e7, j->body);
	if (rc == 0) {
		text = g_strdup_printf("\r\n--%s\r\n%s\r\n\r\n", boundary, pgp
		    ? "Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n"
		      "Content-Description: OpenPGP digital signature\r\n"
		      "Content-Disposition: attachment; filename=\"signature.asc\""
		    : "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n"
		      "Content-Transfer-Encoding: base64\r\n"
		      "Content-Disposition: attachment; filename=\"smime.p7s\"\r\n"
		      "Content-Description: S/MIME Cryptographic Signature");
		rc = sg_spool_puts(j->body, text);
		g_free(text);
	}
	if (rc == 0 && g_mime_stream_reset(e7) < 0)
		rc = SG_EIO;
	if (rc == 0)
		rc = pgp ? sg_openpgp_sign(j->ks, j->plan->signer_fpr, &in, &out,
		    micalg, sizeof(micalg), &j->err)
		    : sg_smime_sign(j->ks, j->plan->signer_fpr, &in, &out, &j->err);
	if (rc == 0) {
		text = g_strdup_printf("\r\n--%s--\r\n", boundary);
		rc = sg_spool_puts(j->body, text);
		g_free(text);
	}
	if (rc == 0)
		j->ctype = sg_mime_signed_type(pgp ? "application/pgp-signature"
		    : "application/pkcs7-signature", micalg, boundary);
	sg_result_reason(j->res, "signed%s", changed ? " (re-encoded 7-bit)" : "");
out:
	j->in = NULL;
	g_object_unref(e7);
	return rc;
}

/* RFC 3156 PGP/MIME of what in delivers, with a signature inside when
 * the plan signs. */
static int
encrypt_openpgp(struct job *j, struct sg_reader *in)
{
	struct sg_writer out = { body_write, j };
	struct sg_openpgp_enc info;
	char boundary[64], *head, *tail;
	int rc, flags = 0;

	rc = new_body(j);
	if (rc < 0)
		return rc;
	sg_mime_boundary(boundary, sizeof(boundary));
	head = sg_mime_pgp_encrypted_head(boundary);
	tail = sg_mime_pgp_encrypted_tail(boundary);
	if (sg_rewrite_has_hidden_recipient(j->msg))
		flags |= SG_PGP_HIDE_RECIPIENTS;
	rc = sg_spool_puts(j->body, head);
	if (rc == 0)
		rc = sg_openpgp_encrypt(j->ks,
		    (const char *const *)j->res->fprs->pdata, j->res->fprs->len,
		    j->plan->sign ? j->plan->signer_fpr : NULL, flags, in, &out,
		    &info, &j->err);
	if (rc == 0)
		rc = sg_spool_puts(j->body, tail);
	if (rc == 0) {
		bool fell_back = info.fallback[0] != '\0';

		j->ctype = sg_mime_pgp_encrypted_type(boundary);
		sg_result_reason(j->res, "%u recipient(s)%s%s, %s%s%s%s%s%s",
		    j->msg->rcpts->len, j->plan->sign ? ", signed" : "",
		    (flags & SG_PGP_HIDE_RECIPIENTS) ? ", key ids hidden" : "",
		    info.engine, info.cipher ? ", " : "",
		    info.cipher ? info.cipher : "",
		    fell_back ? " (rnp not used: " : "", info.fallback,
		    fell_back ? ")" : "");
	}
	g_free(head);
	g_free(tail);
	return rc;
}

/* S/MIME application/pkcs7-mime of what in delivers. */
static int
encrypt_smime(struct job *j, struct sg_reader *in)
{
	struct sg_writer out = { body_write, j };
	struct sg_smime_rcpt *rcpts;
	int rc;

	rc = new_body(j);
	if (rc < 0)
		return rc;
	rcpts = g_new0(struct sg_smime_rcpt, j->res->fprs->len);
	for (guint i = 0; i < j->res->fprs->len; i++) {
		rcpts[i].fpr = g_ptr_array_index(j->res->fprs, i);
		rcpts[i].oaep = g_array_index(j->plan->oaep, gboolean, i);
	}
	rc = sg_smime_encrypt(j->ks, rcpts, j->res->fprs->len, j->plan->cipher,
	    in, &out, &j->err);
	g_free(rcpts);
	if (rc == 0) {
		j->ctype = g_strdup_printf("application/pkcs7-mime; smime-type=%s;"
		    "\n\tname=\"smime.p7m\"", sg_smime_type(j->plan->cipher));
		sg_result_reason(j->res, "%u recipient(s), %s%s", j->msg->rcpts->len,
		    sg_smime_type(j->plan->cipher), j->plan->sign ? ", signed" : "");
		j->res->cipher = sg_smime_cipher_name(j->plan->cipher);
		g_free(j->res->cipher_why);
		j->res->cipher_why = g_strdup(j->plan->cipher_why);
	}
	return rc;
}

static int
encrypt(struct job *j)
{
	struct entity_reader er = { .progress = j->progress };
	struct sg_reader in = { entity_read, &er };
	struct sg_spool *signed_body = NULL;
	int rc;

	for (guint i = 0; i < j->msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(j->msg->rcpts, i);

		g_ptr_array_add(j->res->fprs, g_strdup(r->key_fpr));
	}
	if (j->plan->encrypt_method == SG_METHOD_OPENPGP) {
		er.head = sg_rewrite_content_headers(j->msg);
		er.spool = j->msg->spool;
		er.pos = j->msg->body_offset;
		rc = encrypt_openpgp(j, &in);
		g_string_free(er.head, TRUE);
		return rc;
	}
	/* S/MIME signs first, then encrypts the signed entity. */
	if (j->plan->sign) {
		rc = sign(j, SG_METHOD_SMIME);
		if (rc < 0)
			return rc;
		signed_body = j->body;
		j->body = NULL;
		er.head = header_block("Content-Type", j->ctype);
		er.spool = signed_body;
		g_clear_pointer(&j->ctype, g_free);
	} else {
		er.head = sg_rewrite_content_headers(j->msg);
		er.spool = j->msg->spool;
		er.pos = j->msg->body_offset;
	}
	rc = encrypt_smime(j, &in);
	g_string_free(er.head, TRUE);
	sg_spool_free(signed_body);
	return rc;
}

int
sg_protect(struct sg_msg *msg, const struct sg_policy *pol,
	   const struct sg_keystore *ks, const struct sg_plan *plan,
	   struct sg_progress *progress, struct sg_result *res)
{
	static const char *const smime_extra[] = {
		"Content-Transfer-Encoding", "base64",
		"Content-Disposition", "attachment; filename=\"smime.p7m\"",
		"Content-Description", "S/MIME Encrypted Message",
		NULL,
	};
	struct job j = {
		.msg = msg, .pol = pol, .ks = ks, .plan = plan,
		.progress = progress, .res = res,
	};
	int method = plan->encrypt ? plan->encrypt_method : plan->sign_method;
	int rc;

	rc = plan->encrypt ? encrypt(&j) : sign(&j, plan->sign_method);
	/* The engine only saw its output refused: say why. */
	if (rc < 0 && j.body != NULL && sg_spool_error(j.body) != 0)
		sg_err_set(&j.err, SG_EIO, "cannot spool the new body in %s: %s",
		    pol->gateway.spool_dir, g_strerror(sg_spool_error(j.body)));
	if (rc < 0) {
		sg_spool_free(j.body);
		g_free(j.ctype);
		return sg_result_internal(res, rc, plan->encrypt ? "encryption"
		    : "signing", &j.err);
	}
	sg_rewrite_content_edits(msg, j.ctype, plan->encrypt &&
	    method == SG_METHOD_SMIME ? smime_extra : NULL, &res->edits);
	if (plan->sign)
		g_ptr_array_add(res->fprs, g_strdup(plan->signer_fpr));
	res->edits.body = j.body;
	res->method = sg_method_name(method);
	res->action = plan->encrypt ? (plan->sign ? "sign-encrypt" : "encrypt")
	    : "sign";
	g_free(j.ctype);
	return SG_OK;
}
