/* MIME inspection and construction helpers; see include/sealgate/mime.h. */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "sealgate/mime.h"

struct inspect {
	const char *problem;  /* first critical parser finding */
	unsigned depth;
	unsigned parts;
	bool too_deep;
};

static void
on_warning(gint64 offset, GMimeParserWarning code, const gchar *item,
	   gpointer user_data)
{
	struct inspect *st = user_data;
	const char *what = NULL;

	(void)offset;
	(void)item;
	switch (code) {
	case GMIME_CRIT_INVALID_HEADER_NAME:
		what = "invalid header field name";
		break;
	case GMIME_CRIT_CONFLICTING_HEADER:
		what = "conflicting header fields";
		break;
	case GMIME_CRIT_CONFLICTING_PARAMETER:
		what = "conflicting header parameters";
		break;
	case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
		what = "multipart without boundary";
		break;
	case GMIME_CRIT_NESTING_OVERFLOW:
		st->too_deep = true;
		break;
	case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
		what = "MIME part without headers or content";
		break;
	default:
		break;
	}
	if (what != NULL && st->problem == NULL)
		st->problem = what;
}

static void
walk(GMimeObject *obj, unsigned level, struct inspect *st)
{
	if (obj == NULL)
		return;
	st->parts++;
	if (level > st->depth)
		st->depth = level;
	if (level > SG_MIME_MAX_DEPTH || st->parts > SG_MIME_MAX_PARTS) {
		st->too_deep = true;
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);

		for (int i = 0; i < n && !st->too_deep; i++)
			walk(g_mime_multipart_get_part(mp, i), level + 1, st);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(
		    GMIME_MESSAGE_PART(obj));

		if (inner != NULL)
			walk(g_mime_message_get_mime_part(inner), level + 1, st);
	}
}

static bool
param_is(GMimeContentType *ct, const char *name, const char *value)
{
	const char *v = g_mime_content_type_get_parameter(ct, name);

	return v != NULL && g_ascii_strcasecmp(v, value) == 0;
}

enum armor { ARMOR_NONE, ARMOR_WHOLE, ARMOR_PART };

#define PGP_BEGIN "-----BEGIN PGP MESSAGE-----"
#define PGP_END "-----END PGP MESSAGE-----"

/* Where needle first occurs in a text fed in pieces (a piece starts at
 * offset off); the last bytes of a piece are kept in carry, so that an
 * occurrence across two pieces is found. */
struct finder {
	const char *needle;
	size_t len;
	gint64 found;           /* -1 until found */
	char carry[64];
	size_t ncarry;
};

static void
find_in(struct finder *f, const char *piece, size_t n, gint64 off)
{
	char buf[sizeof(f->carry) + 8192];
	const char *hit;
	size_t k, total, keep;

	for (size_t done = 0; f->found < 0 && done < n; done += k) {
		k = MIN(n - done, sizeof(buf) - f->ncarry);
		memcpy(buf, f->carry, f->ncarry);
		memcpy(buf + f->ncarry, piece + done, k);
		total = f->ncarry + k;
		hit = memmem(buf, total, f->needle, f->len);
		if (hit != NULL) {
			/* buf starts ncarry bytes before piece + done. */
			f->found = off + (gint64)done - (gint64)f->ncarry +
			    (hit - buf);
			return;
		}
		/* What could start an occurrence goes on to the next piece. */
		keep = MIN(total, f->len - 1);
		memcpy(f->carry, buf + total - keep, keep);
		f->ncarry = keep;
	}
}

/* Whether a text part holds an armored PGP message, and whether that is
 * all it holds: the text (up to a NUL, as C strings end) starts with the
 * armor, and the first end line after it is followed by nothing but
 * white space. Reads the content from where it lies, in pieces. */
static enum armor
inline_armor(GMimePart *part)
{
	struct finder begin = { PGP_BEGIN, strlen(PGP_BEGIN), -1, { 0 }, 0 };
	struct finder end = { PGP_END, strlen(PGP_END), -1, { 0 }, 0 };
	GMimeStream *in;
	char buf[16384];
	gint64 off = 0, text_end = 0;
	size_t n;
	bool nul = false;

	if (g_mime_part_get_openpgp_data(part) == GMIME_OPENPGP_DATA_NONE &&
	    g_mime_part_get_content_encoding(part) !=
	    GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE &&
	    g_mime_part_get_content_encoding(part) !=
	    GMIME_CONTENT_ENCODING_BASE64)
		return ARMOR_NONE;
	in = sg_mime_part_stream(GMIME_OBJECT(part));
	if (in == NULL)
		return ARMOR_NONE;
	while (!nul && sg_mime_stream_read(in, buf, sizeof(buf), &n) == 0 &&
	    n > 0) {
		const char *z = memchr(buf, '\0', n);

		if (z != NULL) {
			nul = true;
			n = (size_t)(z - buf);
		}
		find_in(&begin, buf, n, off);
		find_in(&end, buf, n, off);
		for (size_t i = 0; i < n; i++)
			if (!g_ascii_isspace(buf[i]))
				text_end = off + (gint64)i + 1;
		off += (gint64)n;
	}
	g_object_unref(in);
	if (begin.found < 0)
		return ARMOR_NONE;
	return begin.found == 0 && end.found >= 0 &&
	    end.found + (gint64)end.len == text_end ? ARMOR_WHOLE : ARMOR_PART;
}

enum sg_protection
sg_mime_protection_of(GMimeObject *top)
{
	GMimeContentType *ct;

	if (top == NULL)
		return SG_PROT_NONE;
	ct = g_mime_object_get_content_type(top);
	if (g_mime_content_type_is_type(ct, "multipart", "encrypted")) {
		if (param_is(ct, "protocol", "application/pgp-encrypted"))
			return SG_PROT_PGP_MIME;
		return SG_PROT_ENCRYPTED;
	}
	if (g_mime_content_type_is_type(ct, "application", "pkcs7-mime") ||
	    g_mime_content_type_is_type(ct, "application", "x-pkcs7-mime")) {
		/* Signed-only and certs-only S/MIME still need encryption. */
		if (param_is(ct, "smime-type", "signed-data") ||
		    param_is(ct, "smime-type", "certs-only"))
			return SG_PROT_NONE;
		return SG_PROT_SMIME;
	}
	if (g_mime_content_type_is_type(ct, "application", "pgp-encrypted"))
		return SG_PROT_PGP_INLINE;
	if (GMIME_IS_PART(top) &&
	    g_mime_content_type_is_type(ct, "text", "plain") &&
	    inline_armor(GMIME_PART(top)) == ARMOR_WHOLE)
		return SG_PROT_PGP_INLINE;
	return SG_PROT_NONE;
}

int
sg_mime_inspect(GMimeStream *stream, struct sg_mime_info *out,
		GMimeMessage **parsed, struct sg_err *err)
{
	GMimeParserOptions *opts;
	GMimeParser *parser;
	GMimeMessage *msg;
	struct inspect st = { 0 };
	int rc = SG_OK;

	/* Bounds before work: GMime builds every object it reads. */
	rc = sg_mime_prescan(stream, err);
	if (rc < 0)
		return rc;
	if (g_mime_stream_reset(stream) < 0)
		return sg_err_set(err, SG_EIO, "cannot read the message");
	opts = g_mime_parser_options_new();
	g_mime_parser_options_set_warning_callback(opts, on_warning, &st);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	g_mime_parser_set_persist_stream(parser, TRUE);
	msg = g_mime_parser_construct_message(parser, opts);
	if (msg == NULL) {
		rc = sg_err_set(err, SG_EMALFORMED, "not a MIME message");
		goto out;
	}
	walk(g_mime_message_get_mime_part(msg), 1, &st);
	if (st.too_deep) {
		rc = sg_err_set(err, SG_ELIMIT,
		    "MIME nesting deeper than %d levels or more than %d parts",
		    SG_MIME_MAX_DEPTH, SG_MIME_MAX_PARTS);
		goto out;
	}
	if (st.problem != NULL) {
		rc = sg_err_set(err, SG_EMALFORMED, "%s", st.problem);
		goto out;
	}
	out->protection = sg_mime_protection_of(g_mime_message_get_mime_part(msg));
	out->depth = st.depth;
	out->parts = st.parts;
	if (parsed != NULL) {
		*parsed = msg;
		msg = NULL;
	}
out:
	if (msg != NULL)
		g_object_unref(msg);
	g_object_unref(parser);
	g_mime_parser_options_free(opts);
	return rc;
}

const char *
sg_mime_protection_name(enum sg_protection prot)
{
	switch (prot) {
	case SG_PROT_PGP_MIME:		return "PGP/MIME";
	case SG_PROT_PGP_INLINE:	return "inline PGP";
	case SG_PROT_SMIME:		return "S/MIME";
	case SG_PROT_ENCRYPTED:		return "multipart/encrypted";
	default:			return "none";
	}
}

void
sg_mime_boundary(char *buf, size_t len)
{
	unsigned char rnd[12];

	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (unsigned char)g_random_int();
	}
	/* "=_" never occurs in base64 or in ASCII armor lines. */
	snprintf(buf, len, "=_sealgate_%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x"
	    "%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
	    rnd[7], rnd[8], rnd[9], rnd[10], rnd[11]);
}

char *
sg_mime_pgp_encrypted_type(const char *boundary)
{
	return g_strdup_printf("multipart/encrypted;\n"
	    "\tprotocol=\"application/pgp-encrypted\";\n"
	    "\tboundary=\"%s\"", boundary);
}

char *
sg_mime_pgp_encrypted_head(const char *boundary)
{
	return g_strdup_printf(
	    "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
	    "--%s\r\n"
	    "Content-Type: application/pgp-encrypted\r\n"
	    "Content-Description: PGP/MIME version identification\r\n"
	    "\r\n"
	    "Version: 1\r\n"
	    "\r\n"
	    "--%s\r\n"
	    "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
	    "Content-Description: OpenPGP encrypted message\r\n"
	    "Content-Disposition: inline; filename=\"encrypted.asc\"\r\n"
	    "\r\n", boundary, boundary);
}

char *
sg_mime_pgp_encrypted_tail(const char *boundary)
{
	return g_strdup_printf("\r\n--%s--\r\n", boundary);
}

/* True when the stream holds only 7-bit text in lines of at most 998
 * characters. */
static bool
stream_is_7bit(GMimeStream *in)
{
	char buf[8192];
	size_t line = 0;
	ssize_t n;

	while ((n = g_mime_stream_read(in, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)buf[i];

			if (c == 0 || c >= 0x80)
				return false;
			if (c == '\n')
				line = 0;
			else if (++line > 998)
				return false;
		}
	}
	return n == 0;
}

/* Re-encodes every leaf that is not already base64 or quoted-printable
 * with the best 7-bit encoding (which leaves clean 7-bit text alone). */
static void
encode_7bit(GMimeObject *obj, unsigned depth)
{
	if (obj == NULL || depth > SG_MIME_MAX_DEPTH)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);

		for (int i = 0; i < g_mime_multipart_get_count(mp); i++)
			encode_7bit(g_mime_multipart_get_part(mp, i), depth + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(
		    GMIME_MESSAGE_PART(obj));

		if (m != NULL)
			encode_7bit(g_mime_message_get_mime_part(m), depth + 1);
	} else if (GMIME_IS_PART(obj)) {
		GMimePart *part = GMIME_PART(obj);
		GMimeContentEncoding enc = g_mime_part_get_content_encoding(part);

		/* No content at all (GMime's parser can leave it out; the
		 * fuzz input nested-part-without-content.eml): nothing to
		 * encode, and GMime would complain. */
		if (g_mime_part_get_content(part) == NULL)
			return;
		if (enc == GMIME_CONTENT_ENCODING_BASE64 ||
		    enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
		    enc == GMIME_CONTENT_ENCODING_UUENCODE)
			return;
		g_mime_part_set_content_encoding(part,
		    g_mime_part_get_best_content_encoding(part,
		    GMIME_ENCODING_CONSTRAINT_7BIT));
	}
}

GMimeStream *
sg_mime_entity_7bit(GMimeStream *in, bool *changed, struct sg_err *err)
{
	GMimeFormatOptions *fmt;
	GMimeParser *parser;
	GMimeObject *obj;
	GMimeStream *out;

	*changed = false;
	if (g_mime_stream_reset(in) < 0) {
		sg_err_set(err, SG_EIO, "cannot read the message");
		return NULL;
	}
	if (stream_is_7bit(in)) {
		g_mime_stream_reset(in);
		return g_object_ref(in);
	}
	g_mime_stream_reset(in);
	parser = g_mime_parser_new_with_stream(in);
	obj = g_mime_parser_construct_part(parser, NULL);
	g_object_unref(parser);
	if (obj == NULL) {
		sg_err_set(err, SG_EMALFORMED, "cannot parse the message body");
		return NULL;
	}
	encode_7bit(obj, 1);
	fmt = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(fmt, GMIME_NEWLINE_FORMAT_DOS);
	out = g_mime_stream_mem_new();
	if (g_mime_object_write_to_stream(obj, fmt, out) < 0) {
		sg_err_set(err, SG_EIO, "cannot write the re-encoded body");
		g_clear_object(&out);
	} else {
		g_mime_stream_reset(out);
		*changed = true;
	}
	g_mime_format_options_free(fmt);
	g_object_unref(obj);
	return out;
}

char *
sg_mime_signed_type(const char *protocol, const char *micalg,
		    const char *boundary)
{
	return g_strdup_printf("multipart/signed;\n\tprotocol=\"%s\";\n"
	    "\tmicalg=%s;\n\tboundary=\"%s\"", protocol, micalg, boundary);
}

bool
sg_mime_has_nested_encryption(GMimeObject *obj, unsigned depth)
{
	if (obj == NULL || depth > SG_MIME_MAX_DEPTH)
		return false;
	if (depth > 1 && sg_mime_protection_of(obj) != SG_PROT_NONE)
		return true;
	/* Armor inside a text part with other text (or in HTML) is
	 * encrypted content mixed with content the sender controls. */
	if (GMIME_IS_PART(obj) && g_mime_content_type_is_type(
	    g_mime_object_get_content_type(obj), "text", "*") &&
	    inline_armor(GMIME_PART(obj)) != ARMOR_NONE &&
	    (depth > 1 || sg_mime_protection_of(obj) == SG_PROT_NONE))
		return true;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);

		if (depth == 1 && sg_mime_protection_of(obj) != SG_PROT_NONE)
			return false;   /* the whole message is encrypted */
		for (int i = 0; i < g_mime_multipart_get_count(mp); i++)
			if (sg_mime_has_nested_encryption(
			    g_mime_multipart_get_part(mp, i), depth + 1))
				return true;
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(
		    GMIME_MESSAGE_PART(obj));

		if (m != NULL)
			return sg_mime_has_nested_encryption(
			    g_mime_message_get_mime_part(m), depth + 1);
	}
	return false;
}
