/* Verifying the signature of an inbound entity: RFC 1847 multipart/signed
 * (OpenPGP or S/MIME) and opaque S/MIME signed-data. Works on the raw
 * bytes, so that what is verified is exactly what was signed. */
#include <string.h>

#include <gmime/gmime.h>

#include "inbound.h"
#include "sealgate/header.h"
#include "sealgate/mime.h"
#include "sealgate/smimecaps.h"
#include "sealgate/verify.h"

enum delimiter { NOT_DELIMITER, DELIMITER, AMBIGUOUS };

/* Whether p starts a delimiter line of boundary: "--boundary" then "--"
 * (the close delimiter), or white space up to the line end. A longer
 * boundary that merely starts the same is not one. Neither CRLF nor LF
 * but a CR after it makes the line AMBIGUOUS: GMime reads on (the line
 * is content), Python's email and others take the CR as a line break
 * (the line is a delimiter), so that what one reader verifies another
 * would show differently. */
static enum delimiter
delimiter_at(const guint8 *p, const guint8 *end, const char *boundary,
	     bool *close)
{
	size_t bl = strlen(boundary);
	const guint8 *q = p + 2 + bl;

	if (q > end || p[0] != '-' || p[1] != '-' || memcmp(p + 2, boundary, bl))
		return NOT_DELIMITER;
	*close = q + 2 <= end && q[0] == '-' && q[1] == '-';
	if (*close)
		q += 2;
	while (q < end && (*q == ' ' || *q == '\t'))
		q++;
	if (q == end || *q == '\n' || (*q == '\r' && (q + 1 == end ||
	    q[1] == '\n')))
		return DELIMITER;
	return *q == '\r' ? AMBIGUOUS : NOT_DELIMITER;
}

/* Finds the next delimiter line at or after p (at a line start); NULL
 * when there is none, or an ambiguous line comes first. */
static const guint8 *
find_delimiter(const guint8 *p, const guint8 *end, const char *boundary,
	       const guint8 *start, bool *close)
{
	for (; p < end; p++) {
		enum delimiter d;

		if (p != start && p[-1] != '\n')
			continue;
		d = delimiter_at(p, end, boundary, close);
		if (d == AMBIGUOUS)
			return NULL;
		if (d == DELIMITER)
			return p;
	}
	return NULL;
}

static const guint8 *
line_end(const guint8 *p, const guint8 *end)
{
	const guint8 *nl = memchr(p, '\n', (size_t)(end - p));

	return nl != NULL ? nl + 1 : end;
}

bool
sg_split_signed(const guint8 *body, size_t len, const char *boundary,
	     const guint8 **p1, size_t *l1, const guint8 **p2, size_t *l2)
{
	const guint8 *end = body + len, *d1, *d2, *d3, *s1, *s2;
	bool close;

	/* Exactly two parts: open, open, close. */
	d1 = find_delimiter(body, end, boundary, body, &close);
	if (d1 == NULL || close)
		return false;
	s1 = line_end(d1, end);
	d2 = find_delimiter(s1, end, boundary, body, &close);
	if (d2 == NULL || close)
		return false;
	s2 = line_end(d2, end);
	d3 = find_delimiter(s2, end, boundary, body, &close);
	if (d3 == NULL || !close)
		return false;
	*p1 = s1;
	*l1 = (size_t)(d2 - s1);
	if (*l1 >= 2 && d2[-2] == '\r')
		*l1 -= 2;
	else if (*l1 >= 1)
		*l1 -= 1;
	*p2 = s2;
	*l2 = (size_t)(d3 - s2);
	return true;
}

/* The decoded content of a part given as raw bytes. (transfer full) */
static GByteArray *
decode_part(const guint8 *raw, size_t len)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer((const char *)raw, len);
	GMimeParser *parser = g_mime_parser_new_with_stream(s);
	GMimeObject *obj = g_mime_parser_construct_part(parser, NULL);
	GByteArray *out = NULL;

	if (obj != NULL && GMIME_IS_PART(obj)) {
		GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(obj));
		GMimeStream *mem;

		out = g_byte_array_new();
		mem = g_mime_stream_mem_new_with_byte_array(out);
		g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(mem), FALSE);
		if (w != NULL)
			g_mime_data_wrapper_write_to_stream(w, mem);
		g_object_unref(mem);
	}
	if (obj != NULL)
		g_object_unref(obj);
	g_object_unref(parser);
	g_object_unref(s);
	return out;
}

static int
array_write(void *ctx, const void *buf, size_t len)
{
	GByteArray *a = ctx;

	if (a->len + len > SG_VERIFY_MAX)
		return SG_ELIMIT;
	g_byte_array_append(a, buf, (guint)len);
	return SG_OK;
}

/* The body of an entity: the bytes after its first empty line. */
static const guint8 *
entity_body(const guint8 *p, size_t len)
{
	gssize body = sg_header_end(p, len);

	return body >= 0 ? p + body : p + len;
}

void
sg_inbound_verify(const struct sg_keystore *ks, const guint8 *entity,
		  size_t len, const struct sg_claims *claims, struct sg_sig *sig,
		  int *method, GByteArray **unwrapped)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer((const char *)entity,
	    len);
	GMimeParser *parser = g_mime_parser_new_with_stream(s);
	GMimeObject *obj = g_mime_parser_construct_part(parser, NULL);
	GMimeContentType *ct;
	struct sg_err err = { 0 };
	const guint8 *body, *p1, *p2;
	size_t l1, l2;

	*method = SG_NO_METHOD;
	*unwrapped = NULL;
	if (obj == NULL)
		goto out;
	ct = g_mime_object_get_content_type(obj);
	body = entity_body(entity, len);
	if (g_mime_content_type_is_type(ct, "multipart", "signed")) {
		const char *proto = g_mime_content_type_get_parameter(ct, "protocol");
		const char *boundary = g_mime_content_type_get_parameter(ct, "boundary");
		bool pgp = proto && g_ascii_strcasecmp(proto,
		    "application/pgp-signature") == 0;
		bool smime = proto && (g_ascii_strcasecmp(proto,
		    "application/pkcs7-signature") == 0 || g_ascii_strcasecmp(proto,
		    "application/x-pkcs7-signature") == 0);
		GByteArray *sigdata;

		if ((!pgp && !smime) || boundary == NULL)
			goto out;
		*method = pgp ? SG_METHOD_OPENPGP : SG_METHOD_SMIME;
		if (!sg_split_signed(body, (size_t)(entity + len - body), boundary,
		    &p1, &l1, &p2, &l2) || (sigdata = decode_part(p2, l2)) == NULL) {
			sig->status = SG_SIG_INVALID;
			g_strlcpy(sig->reason, "malformed", sizeof(sig->reason));
			goto out;
		}
		if (pgp)
			sg_openpgp_verify(ks, p1, l1, sigdata->data, sigdata->len,
			    sig, &err);
		else
			sg_smime_verify(ks, sigdata->data, sigdata->len, p1, l1,
			    NULL, sig, &err);
		g_byte_array_free(sigdata, TRUE);
	} else if ((g_mime_content_type_is_type(ct, "application", "pkcs7-mime") ||
	    g_mime_content_type_is_type(ct, "application", "x-pkcs7-mime")) &&
	    g_strcmp0(g_mime_content_type_get_parameter(ct, "smime-type"),
	    "signed-data") == 0) {
		GByteArray *der = decode_part(entity, len);
		GByteArray *content = g_byte_array_new();
		struct sg_writer w = { array_write, content };

		*method = SG_METHOD_SMIME;
		if (der != NULL)
			sg_smime_verify(ks, der->data, der->len, NULL, 0, &w, sig,
			    &err);
		if (der == NULL || sig->status == SG_SIG_INVALID ||
		    sig->status == SG_SIG_NONE)
			g_byte_array_free(content, TRUE);
		else
			*unwrapped = content;
		if (der != NULL)
			g_byte_array_free(der, TRUE);
	}
	sg_inbound_check_signer(claims, sig);
out:
	if (obj != NULL)
		g_object_unref(obj);
	g_object_unref(parser);
	g_object_unref(s);
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

/* der as base64 lines of 76 characters, each ended by CRLF. */
static void
append_base64(GString *out, const guint8 *der, size_t len)
{
	char *b64 = g_base64_encode(der, len);
	size_t n = strlen(b64);

	for (size_t i = 0; i < n; i += 76) {
		g_string_append_len(out, b64 + i, (gssize)MIN(76, n - i));
		g_string_append(out, "\r\n");
	}
	g_free(b64);
}

/* The two parts of a multipart/signed body as delivered: the signed part
 * as it was signed, the signature part made anew from the signature
 * alone (its own header fields and any text around the signature are not
 * covered by it). */
static bool
signed_parts(const guint8 *b, size_t len, const char *boundary, GString *t)
{
	const guint8 *p1, *p2;
	GByteArray *sig;
	size_t l1, l2;

	if (!sg_split_signed(b, len, boundary, &p1, &l1, &p2, &l2) ||
	    (sig = decode_part(p2, l2)) == NULL)
		return false;
	g_string_append_printf(t, "--%s\r\n", boundary);
	g_string_append_len(t, (const char *)p1, (gssize)l1);
	g_string_append_printf(t, "\r\n--%s\r\nContent-Type: "
	    "application/pkcs7-signature; name=\"smime.p7s\"\r\n"
	    "Content-Transfer-Encoding: base64\r\nContent-Disposition: "
	    "attachment; filename=\"smime.p7s\"\r\n\r\n", boundary);
	append_base64(t, sig->data, sig->len);
	g_string_append_printf(t, "\r\n--%s--\r\n", boundary);
	g_byte_array_free(sig, TRUE);
	return true;
}

/* True when der is one DER element and nothing after it (a definite
 * length that ends where the data ends). */
static bool
der_whole(const GByteArray *der)
{
	size_t hdr = 2, n;

	if (der->len < 2 || der->data[1] == 0x80)
		return false;
	n = der->data[1];
	if (n & 0x80) {
		size_t k = n & 0x7f;

		if (k == 0 || k > 4 || der->len < 2 + k)
			return false;
		n = 0;
		for (size_t i = 0; i < k; i++)
			n = (n << 8) | der->data[2 + i];
		hdr += k;
	}
	return hdr + n == der->len;
}

bool
sg_inbound_signed_body(const guint8 *entity, size_t len, GByteArray **body,
		       bool *base64)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer((const char *)entity,
	    len);
	GMimeParser *parser = g_mime_parser_new_with_stream(s);
	GMimeObject *obj = g_mime_parser_construct_part(parser, NULL);
	const guint8 *b = entity_body(entity, len);
	const char *boundary, *proto;
	GMimeContentType *ct;
	GByteArray *der;
	GString *t = g_string_new(NULL);
	bool ok = false;

	*body = NULL;
	*base64 = false;
	if (obj == NULL)
		goto out;
	ct = g_mime_object_get_content_type(obj);
	boundary = g_mime_content_type_get_parameter(ct, "boundary");
	proto = g_mime_content_type_get_parameter(ct, "protocol");
	if ((g_mime_content_type_is_type(ct, "application", "pkcs7-mime") ||
	    g_mime_content_type_is_type(ct, "application", "x-pkcs7-mime")) &&
	    g_strcmp0(g_mime_content_type_get_parameter(ct, "smime-type"),
	    "signed-data") == 0 && (der = decode_part(entity, len)) != NULL) {
		/* Opaque signed-data: the signature covers the whole DER (and
		 * nothing may follow it), delivered in base64 of sealgate's
		 * making. */
		ok = *base64 = der_whole(der);
		if (ok)
			append_base64(t, der->data, der->len);
		g_byte_array_free(der, TRUE);
	} else if (g_mime_content_type_is_type(ct, "multipart", "signed") &&
	    boundary != NULL && proto != NULL &&
	    (g_ascii_strcasecmp(proto, "application/pkcs7-signature") == 0 ||
	    g_ascii_strcasecmp(proto, "application/x-pkcs7-signature") == 0)) {
		ok = signed_parts(b, (size_t)(entity + len - b), boundary, t);
	}
out:
	if (ok) {
		gsize n = t->len;

		*body = g_byte_array_new_take((guint8 *)g_string_free(t, FALSE), n);
	} else {
		g_string_free(t, TRUE);
	}
	if (obj != NULL)
		g_object_unref(obj);
	g_object_unref(parser);
	g_object_unref(s);
	return ok;
}
