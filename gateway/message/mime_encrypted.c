/* Whether a message labelled as encrypted really is encrypted as a whole:
 * the content decides, never the Content-Type (DESIGN.md §4 rule 7). */
#include <string.h>

#include "sealgate/encrypted.h"
#include "sealgate/mime.h"

GMimeStream *
sg_mime_decode_stream(GMimeStream *raw, GMimeContentEncoding encoding)
{
	GMimeStream *dec = g_mime_stream_filter_new(raw);
	GMimeFilter *filter = g_mime_filter_basic_new(encoding, FALSE);

	g_mime_stream_filter_add(GMIME_STREAM_FILTER(dec), filter);
	g_object_unref(filter);
	return dec;
}

int
sg_mime_stream_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	ssize_t n = g_mime_stream_read(ctx, buf, len);

	*nread = n > 0 ? (size_t)n : 0;
	/* A bounded GMime stream answers -1 at its end. */
	return n < 0 && !g_mime_stream_eos(ctx) ? SG_EIO : SG_OK;
}

GMimeStream *
sg_mime_part_stream(GMimeObject *obj)
{
	GMimeDataWrapper *w;
	GMimeStream *src, *own, *dec;

	if (!GMIME_IS_PART(obj))
		return NULL;
	w = g_mime_part_get_content(GMIME_PART(obj));
	if (w == NULL || (src = g_mime_data_wrapper_get_stream(w)) == NULL)
		return NULL;
	/* A position of its own: others may read the content too. */
	own = g_mime_stream_substream(src, src->bound_start, src->bound_end);
	if (own == NULL)
		return NULL;
	dec = sg_mime_decode_stream(own, g_mime_data_wrapper_get_encoding(w));
	g_object_unref(own);
	return dec;
}

GByteArray *
sg_mime_part_content(GMimeObject *obj)
{
	GMimeStream *in = sg_mime_part_stream(obj);
	GByteArray *out;
	char buf[65536];
	ssize_t n;

	if (in == NULL)
		return NULL;
	out = g_byte_array_new();
	while ((n = g_mime_stream_read(in, buf, sizeof(buf))) > 0)
		g_byte_array_append(out, (const guint8 *)buf, (guint)n);
	if (n < 0 && !g_mime_stream_eos(in)) {
		g_byte_array_free(out, TRUE);
		out = NULL;
	}
	g_object_unref(in);
	return out;
}

/* Whether the decoded content of a leaf part starts (after white space)
 * with an armor line; reads only its first kilobytes, so that ordinary
 * text is never copied. */
static bool
starts_with_armor(GMimeObject *obj)
{
	static const char begin[] = "-----BEGIN PGP MESSAGE-----";
	GMimeDataWrapper *w = GMIME_IS_PART(obj)
	    ? g_mime_part_get_content(GMIME_PART(obj)) : NULL;
	GMimeStream *raw, *dec;
	GMimeFilter *filter;
	char buf[4096];
	ssize_t n = 0, r;
	size_t i = 0;

	if (w == NULL || (raw = g_mime_data_wrapper_get_stream(w)) == NULL)
		return false;
	g_mime_stream_reset(raw);
	dec = g_mime_stream_filter_new(raw);
	filter = g_mime_filter_basic_new(g_mime_data_wrapper_get_encoding(w),
	    FALSE);
	g_mime_stream_filter_add(GMIME_STREAM_FILTER(dec), filter);
	g_object_unref(filter);
	while (n < (ssize_t)sizeof(buf) &&
	    (r = g_mime_stream_read(dec, buf + n, sizeof(buf) - (size_t)n)) > 0)
		n += r;
	g_object_unref(dec);
	g_mime_stream_reset(raw);
	while (i < (size_t)n && g_ascii_isspace(buf[i]))
		i++;
	return (size_t)n - i >= sizeof(begin) - 1 &&
	    memcmp(buf + i, begin, sizeof(begin) - 1) == 0;
}

/* Text outside the encrypted data goes out in clear: at most
 * SG_MIME_MAX_CLEAR_TEXT bytes of it besides white space. */
static bool
little_text(const char *s)
{
	size_t n = 0;

	for (; s != NULL && *s; s++)
		if (!g_ascii_isspace(*s) && ++n > SG_MIME_MAX_CLEAR_TEXT)
			return false;
	return true;
}

/* The header fields of a part inside PGP/MIME go out in clear too: at
 * most SG_MIME_MAX_PART_HEADER bytes of names and values. */
static bool
little_header(GMimeObject *obj)
{
	GMimeHeaderList *list = g_mime_object_get_header_list(obj);
	size_t n = 0;

	for (int i = 0; list != NULL && i < g_mime_header_list_get_count(list);
	    i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(list, i);
		const char *v = g_mime_header_get_raw_value(h);

		n += strlen(g_mime_header_get_name(h)) + (v != NULL ? strlen(v) : 0);
		if (n > SG_MIME_MAX_PART_HEADER)
			return false;
	}
	return true;
}

static bool
content_is(GMimeObject *obj, const char *type, const char *subtype)
{
	return obj != NULL && g_mime_content_type_is_type(
	    g_mime_object_get_content_type(obj), type, subtype);
}

/* RFC 3156: the control part says "Version: 1" and nothing else, the
 * second part is the encrypted OpenPGP message. */
static bool
pgp_mime_encrypted(GMimeMultipart *mp)
{
	GMimeObject *control, *payload;
	GByteArray *b = NULL;
	bool ok = false;
	char *text;

	if (g_mime_multipart_get_count(mp) != 2 ||
	    !little_text(g_mime_multipart_get_prologue(mp)) ||
	    !little_text(g_mime_multipart_get_epilogue(mp)))
		return false;
	control = g_mime_multipart_get_part(mp, 0);
	payload = g_mime_multipart_get_part(mp, 1);
	if (!little_header(control) || !little_header(payload) ||
	    !content_is(control, "application", "pgp-encrypted") ||
	    (b = sg_mime_part_content(control)) == NULL)
		return false;
	/* An empty part's data is NULL (g_strndup would give NULL, and
	 * g_ascii_strcasecmp called with NULL answers "equal"). */
	text = g_strstrip(b->len > 0 ? g_strndup((const char *)b->data, b->len)
	    : g_strdup(""));
	ok = g_ascii_strcasecmp(text, "Version: 1") == 0 ||
	    g_ascii_strcasecmp(text, "Version:1") == 0;
	g_free(text);
	g_byte_array_free(b, TRUE);
	if (!ok || (b = sg_mime_part_content(payload)) == NULL)
		return false;
	ok = sg_openpgp_is_encrypted(b->data, b->len, false);
	g_byte_array_free(b, TRUE);
	return ok;
}

enum sg_protection
sg_mime_encrypted_as(GMimeObject *top)
{
	enum sg_protection prot = SG_PROT_NONE;
	bool smime, pgp, text;
	GByteArray *b;

	if (content_is(top, "multipart", "encrypted"))
		return GMIME_IS_MULTIPART(top) &&
		    pgp_mime_encrypted(GMIME_MULTIPART(top))
		    ? SG_PROT_PGP_MIME : SG_PROT_NONE;
	smime = content_is(top, "application", "pkcs7-mime") ||
	    content_is(top, "application", "x-pkcs7-mime");
	pgp = content_is(top, "application", "pgp-encrypted");
	text = content_is(top, "text", "plain");
	/* Only these are read; a text body only when it starts as armor. */
	if ((!smime && !pgp && !text) || (text && !starts_with_armor(top)) ||
	    (b = sg_mime_part_content(top)) == NULL)
		return SG_PROT_NONE;
	if (smime && sg_smime_is_enveloped(b->data, b->len))
		prot = SG_PROT_SMIME;
	else if (!smime && sg_openpgp_is_encrypted(b->data, b->len, text))
		prot = SG_PROT_PGP_INLINE;
	g_byte_array_free(b, TRUE);
	return prot;
}
