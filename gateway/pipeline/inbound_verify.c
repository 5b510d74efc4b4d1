/* Verifying the signature of an inbound entity: RFC 1847 multipart/signed
 * (OpenPGP or S/MIME) and opaque S/MIME signed-data. Works on the raw
 * bytes, read from the spool where they lie, so that what is verified is
 * exactly what was signed and none of it is held in memory. */
#include <string.h>

#include <gmime/gmime.h>

#include "inbound.h"
#include "sealgate/header.h"
#include "sealgate/mime.h"
#include "sealgate/smimecaps.h"
#include "sealgate/verify.h"

/* A signature part larger than this is no signature: S/MIME signatures
 * with their certificates take kilobytes. */
#define SIG_PART_MAX (1024 * 1024)
#define CHUNK 65536
/* Bytes of DER per line of base64: 76 characters. */
#define B64_LINE 57

/* Bytes [from, from + len) of s (to its end when len < 0) as a stream
 * with a position of its own. (transfer full) */
static GMimeStream *
slice(GMimeStream *s, gint64 from, gint64 len)
{
	gint64 start = s->bound_start + from;

	return g_mime_stream_substream(s, start, len < 0 ? s->bound_end
	    : start + len);
}

/* A reader over a stream that remembers a failed read: a spool that
 * cannot be read is a temporary failure, not a bad signature. */
struct stream_reader {
	GMimeStream *s;
	bool io_error;
};

static int
reader_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct stream_reader *r = ctx;
	int rc = sg_mime_stream_read(r->s, buf, len, nread);

	if (rc < 0)
		r->io_error = true;
	return rc;
}

/* Splitting multipart/signed ------------------------------------------ */

/* How far the current line is a delimiter line. */
enum line_state {
	MATCH,          /* comparing "--" boundary */
	AFTER_MARKER,   /* right after it */
	CLOSE_DASH,     /* after one '-' of a close delimiter */
	BLANKS,         /* blanks up to the line end */
	AFTER_CR,       /* a CR: only the line end may follow (GMime takes
			 * a line that goes on after it for content,
			 * Python's email for a delimiter and a new line:
			 * what one verifies, another would show
			 * differently) */
	NO_DELIMITER,
};

struct splitter {
	const char *marker;     /* "--" boundary */
	size_t mlen;
	enum line_state st;
	size_t matched;
	bool close;
	gint64 line;            /* where the current line starts */
	bool line_after_crlf;   /* the line break before it was CRLF */
	int found;              /* delimiter lines so far */
	gint64 start[3], after[3];
	bool crlf_before[3];
};

static void
line_reset(struct splitter *sp, gint64 next, bool crlf)
{
	sp->st = MATCH;
	sp->matched = 0;
	sp->close = false;
	sp->line = next;
	sp->line_after_crlf = crlf;
}

/* The current line ended; next is where the next one starts. 1 when the
 * three delimiters are there, 0 to go on, -1 when the delimiters are not
 * open, open, close. */
static int
line_done(struct splitter *sp, gint64 next, bool crlf)
{
	bool delimiter = sp->st == AFTER_MARKER || sp->st == BLANKS ||
	    sp->st == AFTER_CR;
	int i = sp->found;

	if (delimiter) {
		if (sp->close != (i == 2))
			return -1;
		sp->start[i] = sp->line;
		sp->after[i] = next;
		sp->crlf_before[i] = sp->line_after_crlf;
		if (++sp->found == 3)
			return 1;
	}
	line_reset(sp, next, crlf);
	return 0;
}

/* One byte of a line (not its LF); false for a line that goes on after a
 * CR right after a delimiter. */
static bool
line_byte(struct splitter *sp, char c)
{
	switch (sp->st) {
	case MATCH:
		if (c != sp->marker[sp->matched])
			sp->st = NO_DELIMITER;
		else if (++sp->matched == sp->mlen)
			sp->st = AFTER_MARKER;
		break;
	case AFTER_MARKER:
		if (c == '-') {
			sp->st = CLOSE_DASH;
			break;
		}
		/* fall through */
	case BLANKS:
		sp->st = c == ' ' || c == '\t' ? BLANKS : c == '\r' ? AFTER_CR
		    : NO_DELIMITER;
		break;
	case CLOSE_DASH:
		sp->close = c == '-';
		sp->st = c == '-' ? BLANKS : NO_DELIMITER;
		break;
	case AFTER_CR:
		return false;
	case NO_DELIMITER:
		break;
	}
	return true;
}

bool
sg_split_signed(GMimeStream *body, const char *boundary,
		struct sg_signed_parts *out)
{
	struct splitter sp = { 0 };
	GMimeStream *s;
	char buf[CHUNK], prev = 0;
	gint64 pos = 0;
	size_t n;
	int done = 0;
	char *marker;

	if (strpbrk(boundary, "\r\n") != NULL)
		return false;
	marker = g_strconcat("--", boundary, NULL);
	sp.marker = marker;
	sp.mlen = strlen(marker);
	line_reset(&sp, 0, false);
	s = slice(body, 0, -1);
	while (done == 0 && sg_mime_stream_read(s, buf, sizeof(buf), &n) == 0 &&
	    n > 0) {
		for (size_t i = 0; i < n && done == 0; i++) {
			if (buf[i] == '\n') {
				done = line_done(&sp, pos + (gint64)i + 1,
				    prev == '\r');
			} else if (sp.st == NO_DELIMITER) {
				const char *nl = memchr(buf + i, '\n', n - i);
				size_t skip = nl != NULL ? (size_t)(nl - buf) - i
				    : n - i;

				/* Content: on to the line end. */
				i += skip - 1;
				prev = buf[i];
				continue;
			} else if (!line_byte(&sp, buf[i])) {
				done = -1;
			}
			prev = buf[i];
		}
		pos += (gint64)n;
	}
	if (done == 0)
		done = line_done(&sp, pos, false);
	g_object_unref(s);
	g_free(marker);
	if (done != 1)
		return false;
	out->p1 = sp.after[0];
	out->l1 = sp.start[1] - sp.after[0];
	/* The line break before the second delimiter belongs to it. */
	if (out->l1 >= 2 && sp.crlf_before[1])
		out->l1 -= 2;
	else if (out->l1 >= 1)
		out->l1 -= 1;
	out->p2 = sp.after[1];
	out->l2 = sp.start[2] - sp.after[1];
	return true;
}

/* Verifying ------------------------------------------------------------ */

/* The decoded content of the signature part. NULL when it is no MIME
 * part or larger than a signature can be. (transfer full) */
static GByteArray *
signature_of(GMimeStream *body, const struct sg_signed_parts *parts)
{
	GMimeStream *s;
	GMimeParser *parser;
	GMimeObject *obj;
	GByteArray *out;

	if (parts->l2 > SIG_PART_MAX)
		return NULL;
	s = slice(body, parts->p2, parts->l2);
	parser = g_mime_parser_new_with_stream(s);
	obj = g_mime_parser_construct_part(parser, NULL);
	out = obj != NULL ? sg_mime_part_content(obj) : NULL;
	if (obj != NULL)
		g_object_unref(obj);
	g_object_unref(parser);
	g_object_unref(s);
	return out;
}

static bool
is_type(GMimeObject *obj, const char *type, const char *subtype)
{
	return g_mime_content_type_is_type(g_mime_object_get_content_type(obj),
	    type, subtype);
}

static const char *
param(GMimeObject *obj, const char *name)
{
	return g_mime_content_type_get_parameter(
	    g_mime_object_get_content_type(obj), name);
}

static bool
opaque_signed(GMimeObject *obj)
{
	return (is_type(obj, "application", "pkcs7-mime") ||
	    is_type(obj, "application", "x-pkcs7-mime")) &&
	    g_strcmp0(param(obj, "smime-type"), "signed-data") == 0;
}

static bool
smime_protocol(const char *proto)
{
	return proto != NULL && (g_ascii_strcasecmp(proto,
	    "application/pkcs7-signature") == 0 || g_ascii_strcasecmp(proto,
	    "application/x-pkcs7-signature") == 0);
}

/* multipart/signed: the first part as it lies in the spool, the
 * signature decoded. */
static int
verify_signed(const struct sg_keystore *ks, const struct sg_entity *e,
	      const char *boundary, bool pgp, struct sg_sig *sig)
{
	struct sg_signed_parts parts;
	struct stream_reader r = { NULL, false };
	struct sg_reader data = { reader_read, &r };
	struct sg_err err = { 0 };
	GByteArray *sigdata = NULL;

	if (!sg_split_signed(e->body, boundary, &parts) ||
	    (sigdata = signature_of(e->body, &parts)) == NULL) {
		sig->status = SG_SIG_INVALID;
		g_strlcpy(sig->reason, "malformed", sizeof(sig->reason));
		return SG_OK;
	}
	r.s = slice(e->body, parts.p1, parts.l1);
	if (pgp)
		sg_openpgp_verify(ks, &data, sigdata->data, sigdata->len, sig,
		    &err);
	else
		sg_smime_verify(ks, sigdata->data, sigdata->len, &data, sig, &err);
	g_object_unref(r.s);
	g_byte_array_free(sigdata, TRUE);
	return r.io_error ? SG_EIO : SG_OK;
}

/* The body of e decoded (base64, mostly) into a new spool. */
static int
decoded_body(const struct sg_entity *e, const char *spool_dir,
	     struct sg_spool **out)
{
	GMimeContentEncoding enc = GMIME_IS_PART(e->obj)
	    ? g_mime_part_get_content_encoding(GMIME_PART(e->obj))
	    : GMIME_CONTENT_ENCODING_DEFAULT;
	GMimeStream *raw = slice(e->body, 0, -1);
	GMimeStream *dec = sg_mime_decode_stream(raw, enc);
	int rc = sg_spool_new(spool_dir, SG_SPOOL_MEM_LIMIT, out);

	if (rc == 0)
		rc = sg_spool_write_stream(*out, dec);
	if (rc < 0) {
		sg_spool_free(*out);
		*out = NULL;
	}
	g_object_unref(dec);
	g_object_unref(raw);
	return rc;
}

/* The signed content of opaque signed-data, bounded, in CRLF form. */
struct content_sink {
	struct sg_spool *spool;
	size_t n;
	bool io_error;
};

static int
content_write(void *ctx, const void *buf, size_t len)
{
	struct content_sink *c = ctx;
	int rc;

	if (c->n + len > SG_VERIFY_MAX)
		return SG_ELIMIT;
	c->n += len;
	rc = sg_spool_write_crlf(c->spool, buf, len);
	if (rc < 0)
		c->io_error = true;
	return rc;
}

static int
verify_opaque(const struct sg_keystore *ks, const struct sg_entity *e,
	      const char *spool_dir, struct sg_sig *sig,
	      struct sg_spool **unwrapped)
{
	struct content_sink sink = { NULL, 0, false };
	struct sg_writer w = { content_write, &sink };
	struct sg_spool *der = NULL;
	struct sg_source src;
	struct sg_err err = { 0 };
	int rc;

	rc = decoded_body(e, spool_dir, &der);
	if (rc == 0 && unwrapped != NULL)
		rc = sg_spool_new(spool_dir, SG_SPOOL_MEM_LIMIT, &sink.spool);
	if (rc == 0) {
		sg_spool_source(der, &src);
		rc = sg_smime_verify_opaque(ks, &src, unwrapped != NULL ? &w : NULL,
		    sig, &err);
	}
	if (rc == 0 && sink.io_error)
		rc = SG_EIO;
	/* Unwrapped when the signature holds, whatever the claims say. */
	if (rc == 0 && unwrapped != NULL && sig->status != SG_SIG_INVALID &&
	    sig->status != SG_SIG_NONE) {
		*unwrapped = sink.spool;
		sink.spool = NULL;
	}
	sg_spool_free(sink.spool);
	sg_spool_free(der);
	return rc;
}

int
sg_inbound_verify(const struct sg_keystore *ks, const struct sg_entity *e,
		  const struct sg_claims *claims, const char *spool_dir,
		  struct sg_sig *sig, int *method, struct sg_spool **unwrapped)
{
	int rc = SG_OK;

	*method = SG_NO_METHOD;
	if (unwrapped != NULL)
		*unwrapped = NULL;
	if (e->obj == NULL)
		return SG_OK;
	if (is_type(e->obj, "multipart", "signed")) {
		const char *proto = param(e->obj, "protocol");
		const char *boundary = param(e->obj, "boundary");
		bool pgp = proto && g_ascii_strcasecmp(proto,
		    "application/pgp-signature") == 0;

		if ((!pgp && !smime_protocol(proto)) || boundary == NULL)
			return SG_OK;
		*method = pgp ? SG_METHOD_OPENPGP : SG_METHOD_SMIME;
		rc = verify_signed(ks, e, boundary, pgp, sig);
	} else if (opaque_signed(e->obj)) {
		*method = SG_METHOD_SMIME;
		rc = verify_opaque(ks, e, spool_dir, sig, unwrapped);
	}
	if (rc == 0)
		sg_inbound_check_signer(claims, sig);
	return rc;
}

void
sg_inbound_record_caps(const struct sg_keystore *ks, const struct sg_sig *sig,
		       int method, struct sg_result *res)
{
	struct sg_err err = { 0 };
	char list[128];
	bool changed = false;

	if (sig->status != SG_SIG_VALID || method != SG_METHOD_SMIME ||
	    !sig->has_smime_caps)
		return;
	sg_smime_caps_format(sig->smime_caps, list, sizeof(list));
	if (sg_smime_caps_record(ks, sig->fpr, sig->smime_caps, sig->created,
	    &changed, &err) < 0) {
		g_free(res->caps_error);
		res->caps_error = g_strdup_printf("%s: %s", sig->fpr, err.msg);
	} else if (changed) {
		g_free(res->caps_recorded);
		res->caps_recorded = g_strdup_printf("%s: %s", sig->fpr, list);
	}
}

/* What a signature covers, delivered ---------------------------------- */

/* DER in base64 lines of 76 characters, each ended by CRLF. */
static int
append_base64(struct sg_spool *out, const guint8 *der, size_t len)
{
	int rc = SG_OK;

	for (size_t i = 0; rc == 0 && i < len; i += B64_LINE) {
		char *line = g_base64_encode(der + i, MIN(B64_LINE, len - i));

		rc = sg_spool_puts(out, line);
		if (rc == 0)
			rc = sg_spool_write(out, "\r\n", 2);
		g_free(line);
	}
	return rc;
}

static int
append_spool_base64(struct sg_spool *out, struct sg_spool *der)
{
	guint8 buf[B64_LINE * 1024];
	off_t off = 0;
	size_t n, got;
	int rc = SG_OK;

	while (rc == 0 && (size_t)off < sg_spool_size(der)) {
		/* Whole lines but for the last. */
		for (n = 0; rc == 0 && n < sizeof(buf); n += got) {
			rc = sg_spool_read_at(der, off + (off_t)n, buf + n,
			    sizeof(buf) - n, &got);
			if (got == 0)
				break;
		}
		if (rc == 0 && n == 0)
			rc = SG_EIO;
		if (rc == 0)
			rc = append_base64(out, buf, n);
		off += (off_t)n;
	}
	return rc;
}

/* True when der is one DER element and nothing after it (a definite
 * length that ends where the data ends). */
static int
der_whole(struct sg_spool *der, bool *whole)
{
	guint8 h[6];
	size_t len = sg_spool_size(der), got, hdr = 2, n;
	int rc = sg_spool_read_at(der, 0, h, sizeof(h), &got);

	*whole = false;
	if (rc < 0 || got < 2 || h[1] == 0x80)
		return rc;
	n = h[1];
	if (n & 0x80) {
		size_t k = n & 0x7f;

		if (k == 0 || k > 4 || got < 2 + k)
			return SG_OK;
		n = 0;
		for (size_t i = 0; i < k; i++)
			n = (n << 8) | h[2 + i];
		hdr += k;
	}
	*whole = hdr + n == len;
	return SG_OK;
}

/* The two parts of a multipart/signed body as delivered: the signed part
 * as it was signed, the signature part made anew from the signature
 * alone (its own header fields and any text around the signature are not
 * covered by it). */
static int
signed_parts(const struct sg_entity *e, const char *boundary,
	     struct sg_spool *out, bool *covered)
{
	struct sg_signed_parts parts;
	GByteArray *sig;
	GMimeStream *s;
	char *text;
	int rc;

	if (!sg_split_signed(e->body, boundary, &parts) ||
	    (sig = signature_of(e->body, &parts)) == NULL)
		return SG_OK;
	text = g_strdup_printf("--%s\r\n", boundary);
	rc = sg_spool_puts(out, text);
	g_free(text);
	s = slice(e->body, parts.p1, parts.l1);
	if (rc == 0)
		rc = sg_spool_write_stream(out, s);
	g_object_unref(s);
	text = g_strdup_printf("\r\n--%s\r\nContent-Type: "
	    "application/pkcs7-signature; name=\"smime.p7s\"\r\n"
	    "Content-Transfer-Encoding: base64\r\nContent-Disposition: "
	    "attachment; filename=\"smime.p7s\"\r\n\r\n", boundary);
	if (rc == 0)
		rc = sg_spool_puts(out, text);
	g_free(text);
	if (rc == 0)
		rc = append_base64(out, sig->data, sig->len);
	text = g_strdup_printf("\r\n--%s--\r\n", boundary);
	if (rc == 0)
		rc = sg_spool_puts(out, text);
	g_free(text);
	g_byte_array_free(sig, TRUE);
	*covered = rc == 0;
	return rc;
}

int
sg_inbound_signed_body(const struct sg_entity *e, const char *spool_dir,
		       struct sg_spool *out, bool *covered, bool *base64)
{
	struct sg_spool *der = NULL;
	const char *boundary;
	int rc = SG_OK;

	*covered = false;
	*base64 = false;
	if (e->obj == NULL)
		return SG_OK;
	boundary = param(e->obj, "boundary");
	if (opaque_signed(e->obj)) {
		/* The signature covers the whole DER (and nothing may follow
		 * it), delivered in base64 of sealgate's making. */
		rc = decoded_body(e, spool_dir, &der);
		if (rc == 0)
			rc = der_whole(der, covered);
		if (rc == 0 && *covered)
			rc = append_spool_base64(out, der);
		*base64 = *covered;
		sg_spool_free(der);
	} else if (is_type(e->obj, "multipart", "signed") && boundary != NULL &&
	    smime_protocol(param(e->obj, "protocol"))) {
		rc = signed_parts(e, boundary, out, covered);
	}
	if (rc < 0)
		*covered = false;
	return rc;
}
