/* OpenPGP packets and armor; see openpgp_packet.h. */
#include <string.h>

#include "openpgp_packet.h"
#include "sealgate/openpgp.h"

size_t
sg_pgp_packet_header(const unsigned char *p, size_t avail, int *tag,
		     size_t *len)
{
	size_t h;

	if (avail < 2 || !(p[0] & 0x80))
		return 0;
	if (p[0] & 0x40) {                      /* new format */
		*tag = p[0] & 0x3f;
		if (p[1] < 192) {
			*len = p[1];
			h = 2;
		} else if (p[1] < 224 && avail >= 3) {
			*len = ((size_t)(p[1] - 192) << 8) + p[2] + 192;
			h = 3;
		} else if (p[1] == 255 && avail >= 6) {
			*len = ((size_t)p[2] << 24) | ((size_t)p[3] << 16) |
			    ((size_t)p[4] << 8) | p[5];
			h = 6;
		} else {
			return 0;               /* partial lengths: not a PKESK */
		}
	} else {                                /* old format */
		*tag = (p[0] >> 2) & 0x0f;
		switch (p[0] & 3) {
		case 0: *len = p[1]; h = 2; break;
		case 1:
			if (avail < 3)
				return 0;
			*len = ((size_t)p[1] << 8) | p[2];
			h = 3;
			break;
		case 2:
			if (avail < 5)
				return 0;
			*len = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) |
			    ((size_t)p[3] << 8) | p[4];
			h = 5;
			break;
		default:
			return 0;
		}
	}
	return h + *len <= avail ? h : 0;
}

#define ARMOR_BEGIN "-----BEGIN PGP MESSAGE-----"
#define ARMOR_END "-----END PGP MESSAGE-----"

/* The line at p without its line end and trailing blanks (a no-break
 * space too, in UTF-8 or Latin-1: mail programs put one on the empty line
 * after the armor headers); *next is the start of the following line. */
static size_t
armor_line(const char *p, const char *end, const char **next)
{
	const unsigned char *u = (const unsigned char *)p;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	size_t l = (size_t)((nl != NULL ? nl : end) - p);

	*next = nl != NULL ? nl + 1 : end;
	while (l > 0) {
		if (u[l - 1] == '\r' || u[l - 1] == ' ' || u[l - 1] == '\t') {
			l--;
		} else if (u[l - 1] == 0xa0) {
			l -= l >= 2 && u[l - 2] == 0xc2 ? 2 : 1;
		} else {
			break;
		}
	}
	return l;
}

static bool
line_is(const char *p, size_t l, const char *what)
{
	return l == strlen(what) && memcmp(p, what, l) == 0;
}

/* Armor header lines ("Name: value") up to the empty line; at most
 * SG_PGP_MAX_ARMOR_HEADERS bytes of them. NULL when they are not. */
static const char *
armor_headers(const char *p, const char *end)
{
	size_t total = 0, l;
	const char *next, *colon;

	for (; p < end; p = next) {
		l = armor_line(p, end, &next);
		if (l == 0)
			return next;
		colon = memchr(p, ':', l);
		total += l;
		if (colon == NULL || colon == p || total > SG_PGP_MAX_ARMOR_HEADERS)
			return NULL;
		for (size_t i = 0; i < l; i++)
			if (!g_ascii_isprint(p[i]))
				return NULL;
	}
	return NULL;
}

static bool
base64_text(const char *p, size_t l)
{
	for (size_t i = 0; i < l; i++)
		if (!g_ascii_isalnum(p[i]) && p[i] != '+' && p[i] != '/' &&
		    p[i] != '=')
			return false;
	return true;
}

/* The base64 lines up to the END line, appended to b64; returns what
 * follows the END line, or NULL. */
static const char *
armor_body(const char *p, const char *end, GString *b64)
{
	bool closed = false;   /* after padding */
	bool crc = false;      /* after the checksum */
	const char *next, *eq;
	size_t l;

	for (; p < end; p = next) {
		l = armor_line(p, end, &next);
		if (line_is(p, l, ARMOR_END))
			return next;
		if (crc || l == 0 || !base64_text(p, l))
			return NULL;
		if (p[0] == '=') {      /* checksum: "=" and 4 base64 digits */
			if (l != 5 || memchr(p + 1, '=', 4) != NULL)
				return NULL;
			crc = true;
			continue;
		}
		if (closed)
			return NULL;
		eq = memchr(p, '=', l);
		if (eq != NULL) {
			/* padding: only at the end of the last line */
			if (eq < p + l - 2 || p[l - 1] != '=')
				return NULL;
			closed = true;
		}
		g_string_append_len(b64, p, (gssize)l);
	}
	return NULL;
}

GByteArray *
sg_pgp_dearmor_whole(const void *data, size_t len)
{
	const char *p = data, *end, *next;
	GString *b64;
	GByteArray *out = NULL;
	gsize n = 0;

	if (len == 0)
		return NULL;    /* data may be NULL */
	end = p + len;
	b64 = g_string_new(NULL);
	while (p < end && g_ascii_isspace(*p))
		p++;
	if (p >= end || !line_is(p, armor_line(p, end, &next), ARMOR_BEGIN))
		goto out;
	p = armor_headers(next, end);
	if (p != NULL)
		p = armor_body(p, end, b64);
	if (p == NULL || b64->len == 0 || b64->len % 4 != 0)
		goto out;
	for (; p < end; p++)
		if (!g_ascii_isspace(*p))
			goto out;
	if (g_base64_decode_inplace(b64->str, &n) == NULL || n == 0)
		goto out;
	out = g_byte_array_new();
	g_byte_array_append(out, (const guint8 *)b64->str, (guint)n);
out:
	g_string_free(b64, TRUE);
	return out;
}

/* A new-format packet with partial body lengths: the chunks up to the
 * last, definite one. */
static bool
partial_span(const unsigned char *p, size_t avail, size_t *total)
{
	size_t off = 1, chunk;
	bool last = false;

	while (!last) {
		if (off >= avail)
			return false;
		if (p[off] >= 224 && p[off] < 255) {
			chunk = (size_t)1 << (p[off] & 0x1f);
			off += 1;
		} else if (p[off] < 192) {
			chunk = p[off];
			off += 1;
			last = true;
		} else if (p[off] < 224) {
			if (avail - off < 2)
				return false;
			chunk = ((size_t)(p[off] - 192) << 8) + p[off + 1] + 192;
			off += 2;
			last = true;
		} else {
			if (avail - off < 5)
				return false;
			chunk = ((size_t)p[off + 1] << 24) | ((size_t)p[off + 2] << 16) |
			    ((size_t)p[off + 3] << 8) | p[off + 4];
			off += 5;
			last = true;
		}
		if (chunk > avail - off)
			return false;
		off += chunk;
	}
	*total = off;
	return true;
}

bool
sg_pgp_packet_span(const unsigned char *p, size_t avail, int *tag,
		   size_t *body, size_t *total)
{
	size_t h, len;

	if (avail >= 2 && (p[0] & 0xc0) == 0xc0 && p[1] >= 224 && p[1] < 255) {
		*tag = p[0] & 0x3f;
		*body = 2;
		return partial_span(p, avail, total);
	}
	h = sg_pgp_packet_header(p, avail, tag, &len);
	if (h == 0)
		return false;
	*body = h;
	*total = h + len;
	return true;
}

GByteArray *
sg_openpgp_binary(const void *data, size_t len)
{
	const char *p = data, *end;
	GByteArray *out = g_byte_array_new();

	/* data may be NULL when there is none. */
	if (len == 0)
		return out;
	end = p + len;
	while (p < end && g_ascii_isspace(*p))
		p++;
	if (p < end && *p == '-') {
		g_byte_array_free(out, TRUE);
		return sg_pgp_dearmor_whole(data, len);
	}
	g_byte_array_append(out, data, (guint)len);
	return out;
}
