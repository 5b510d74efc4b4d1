/* The one strict ASCII armor reader, fed in pieces: the same bytes make
 * the same packets whether a message is decoded from memory
 * (sg_openpgp_binary, sg_pgp_dearmor_whole) or while gpg reads it from
 * the spool (sg_openpgp_reader), so that a 50 MB message is never held.
 *
 * Armor is exactly one "PGP MESSAGE" block with only white space around
 * it: the BEGIN line, armor header lines ("Name: value", printable ASCII,
 * at most SG_PGP_MAX_ARMOR_HEADERS bytes in all), one empty line, base64
 * lines (padding only at the end of the last one), an optional checksum
 * line ("=" and four base64 digits), the END line. White space at the end
 * of a line does not count: space, tab, CR and the no-break space U+00A0
 * (in UTF-8 or Latin-1), which HTML editors put on the empty line; white
 * space anywhere else in a base64 line makes the armor malformed. */
#include <string.h>

#include "openpgp_packet.h"
#include "sealgate/openpgp.h"

#define ARMOR_BEGIN "-----BEGIN PGP MESSAGE-----"
#define ARMOR_END "-----END PGP MESSAGE-----"
/* What a line that is not base64 data may hold: the BEGIN and END lines,
 * a header line, the checksum. */
#define LINE_CAP 512
#define CHUNK 16384

enum state {
	LEADING,        /* white space before the armor */
	BEGIN_LINE,
	HEADERS,        /* armor header lines up to the empty line */
	BODY,           /* base64 lines and the checksum up to the END line */
	TRAILING,       /* white space after the END line */
	BINARY,         /* no armor: the bytes as they are */
	BAD,
};

/* What the current line of the body is. */
enum kind { UNKNOWN, SHORT, DATA };

struct armor {
	enum state st;
	bool armor_only;        /* refuse what is not armor */
	size_t leading;         /* white space before the armor */
	/* The current line: its content so far (short lines), the white
	 * space not yet known to be trailing, a 0xc2 that may start
	 * U+00A0. */
	guint8 line[LINE_CAP];
	size_t line_len;
	guint8 blanks[LINE_CAP];
	size_t blanks_len;
	bool blanks_cut;
	bool c2;
	enum kind kind;
	/* The body. */
	size_t header_total;
	bool closed;            /* after padding */
	bool crc;               /* after the checksum */
	unsigned eq;            /* '=' in the current base64 line */
	guint64 b64_len;
	gint b64_state;
	guint b64_save;
	guint64 out_len;
	/* Base64 of this feed, decoded at its end. */
	guint8 batch[CHUNK];
	size_t batch_len;
	void (*emit)(void *ctx, const guint8 *p, size_t n);
	void *ctx;
};

static void
armor_init(struct armor *a, bool armor_only,
	   void (*emit)(void *, const guint8 *, size_t), void *ctx)
{
	memset(a, 0, sizeof(*a));
	a->st = LEADING;
	a->armor_only = armor_only;
	a->emit = emit;
	a->ctx = ctx;
}

static bool
is_base64(guint8 c)
{
	return g_ascii_isalnum(c) || c == '+' || c == '/' || c == '=';
}

static void
flush_batch(struct armor *a)
{
	guint8 out[CHUNK / 4 * 3 + 3];
	gsize n;

	if (a->batch_len == 0)
		return;
	n = g_base64_decode_step((const gchar *)a->batch, a->batch_len, out,
	    &a->b64_state, &a->b64_save);
	a->batch_len = 0;
	a->out_len += n;
	if (n > 0)
		a->emit(a->ctx, out, n);
}

static bool
line_is(const struct armor *a, const char *what)
{
	return a->line_len == strlen(what) && memcmp(a->line, what,
	    a->line_len) == 0;
}

/* One character of a base64 line: '=' only at its end (one or two of
 * them, and then no further base64 line). */
static bool
data_char(struct armor *a, guint8 c)
{
	if (!is_base64(c))
		return false;
	if (c == '=') {
		if (++a->eq > 2)
			return false;
	} else if (a->eq > 0) {
		return false;
	}
	if (a->batch_len == sizeof(a->batch))
		flush_batch(a);
	a->batch[a->batch_len++] = c;
	a->b64_len++;
	return true;
}

/* A byte of the line's content (not trailing white space); the white
 * space before it was inside the line. */
static bool
content(struct armor *a, guint8 c)
{
	if (a->st == BODY && a->kind == UNKNOWN) {
		/* What the line is, from its first character: the END line,
		 * the checksum, or base64 (not after the checksum, not after
		 * padding); white space before it never belongs there. */
		if (a->blanks_len > 0)
			return false;
		if (c == '-' || c == '=')
			a->kind = SHORT;
		else if (is_base64(c) && !a->crc && !a->closed)
			a->kind = DATA;
		else
			return false;
	}
	if (a->st == BODY && a->kind == DATA)
		return a->blanks_len == 0 && data_char(a, c);
	if (a->blanks_cut || a->line_len + a->blanks_len + 1 > LINE_CAP)
		return false;
	memcpy(a->line + a->line_len, a->blanks, a->blanks_len);
	a->line_len += a->blanks_len;
	a->blanks_len = 0;
	a->line[a->line_len++] = c;
	return true;
}

static void
blank(struct armor *a, guint8 c)
{
	if (a->blanks_len < sizeof(a->blanks))
		a->blanks[a->blanks_len++] = c;
	else
		a->blanks_cut = true;
}

static bool
header_line(struct armor *a)
{
	const guint8 *colon = memchr(a->line, ':', a->line_len);

	if (a->line_len == 0) {
		a->st = BODY;
		return true;
	}
	a->header_total += a->line_len;
	if (colon == NULL || colon == a->line ||
	    a->header_total > SG_PGP_MAX_ARMOR_HEADERS)
		return false;
	for (size_t i = 0; i < a->line_len; i++)
		if (!g_ascii_isprint(a->line[i]))
			return false;
	return true;
}

/* The end of a short line of the body: the END line or the checksum. */
static bool
short_line(struct armor *a)
{
	if (line_is(a, ARMOR_END)) {
		a->st = TRAILING;
		return true;
	}
	if (a->crc || a->line_len != 5 || a->line[0] != '=')
		return false;
	for (size_t i = 1; i < 5; i++)
		if (!is_base64(a->line[i]) || a->line[i] == '=')
			return false;
	a->crc = true;
	return true;
}

static bool
line_end(struct armor *a)
{
	bool ok = true;

	if (a->c2) {            /* a 0xc2 at the end is no white space */
		a->c2 = false;
		ok = content(a, 0xc2);
	}
	if (ok) {
		switch (a->st) {
		case BEGIN_LINE:
			ok = line_is(a, ARMOR_BEGIN);
			a->st = HEADERS;
			break;
		case HEADERS:
			ok = header_line(a);
			break;
		case BODY:
			if (a->kind == DATA)
				a->closed = a->eq > 0;
			else
				ok = a->kind == SHORT && short_line(a);
			break;
		default:
			break;
		}
	}
	a->line_len = a->blanks_len = 0;
	a->blanks_cut = false;
	a->kind = UNKNOWN;
	a->eq = 0;
	return ok;
}

/* One byte of a line. */
static bool
line_byte(struct armor *a, guint8 c)
{
	if (a->c2) {
		a->c2 = false;
		if (c == 0xa0) {        /* U+00A0 in UTF-8 */
			blank(a, 0xc2);
			blank(a, 0xa0);
			return true;
		}
		if (!content(a, 0xc2))
			return false;
	}
	switch (c) {
	case '\n':
		return line_end(a);
	case ' ':
	case '\t':
	case '\r':
	case 0xa0:
		blank(a, c);
		return true;
	case 0xc2:
		a->c2 = true;
		return true;
	default:
		return content(a, c);
	}
}

/* Feeds n bytes; false once the data is malformed. */
static bool
armor_feed(struct armor *a, const guint8 *p, size_t n)
{
	for (size_t i = 0; i < n && a->st != BAD; i++) {
		switch (a->st) {
		case LEADING:
			if (g_ascii_isspace(p[i])) {
				a->leading++;
				continue;
			}
			/* Packets never start with white space (a packet tag
			 * has its high bit set). */
			if (p[i] != '-' && (a->armor_only || a->leading > 0)) {
				a->st = BAD;
				break;
			}
			a->st = p[i] == '-' ? BEGIN_LINE : BINARY;
			i--;
			break;
		case BINARY:
			a->emit(a->ctx, p + i, n - i);
			a->out_len += n - i;
			i = n;
			break;
		case TRAILING:
			if (!g_ascii_isspace(p[i]))
				a->st = BAD;
			break;
		default:
			if (!line_byte(a, p[i]))
				a->st = BAD;
			break;
		}
	}
	if (a->st != BAD)
		flush_batch(a);
	return a->st != BAD;
}

/* The end of the data: true when it was complete armor (or binary). */
static bool
armor_finish(struct armor *a)
{
	if (a->st == BEGIN_LINE || a->st == HEADERS || a->st == BODY) {
		if (a->line_len > 0 || a->blanks_len > 0 || a->c2 ||
		    a->kind != UNKNOWN) {
			if (!line_end(a))
				a->st = BAD;
		}
		flush_batch(a);
	}
	switch (a->st) {
	case TRAILING:
		return a->b64_len > 0 && a->b64_len % 4 == 0 && a->out_len > 0;
	case BINARY:
		return true;
	case LEADING:           /* nothing but white space, or nothing */
		return !a->armor_only && a->leading == 0;
	default:
		return false;
	}
}

/* From memory ---------------------------------------------------------- */

static void
emit_array(void *ctx, const guint8 *p, size_t n)
{
	g_byte_array_append(ctx, p, (guint)n);
}

static GByteArray *
decode(const void *data, size_t len, bool armor_only)
{
	struct armor *a = g_new(struct armor, 1);
	GByteArray *out = g_byte_array_new();
	bool ok;

	armor_init(a, armor_only, emit_array, out);
	ok = armor_feed(a, data, len) && armor_finish(a);
	g_free(a);
	if (!ok) {
		g_byte_array_free(out, TRUE);
		return NULL;
	}
	return out;
}

GByteArray *
sg_pgp_dearmor_whole(const void *data, size_t len)
{
	return decode(data, len, true);
}

GByteArray *
sg_openpgp_binary(const void *data, size_t len)
{
	return decode(data, len, false);
}

/* From a reader ------------------------------------------------------- */

struct sg_openpgp_reader {
	struct sg_reader *in;
	struct armor armor;
	GByteArray *out;        /* decoded, not read yet */
	size_t pos;
	bool done;
	int rc;
};

struct sg_openpgp_reader *
sg_openpgp_reader_new(struct sg_reader *in)
{
	struct sg_openpgp_reader *r = g_new0(struct sg_openpgp_reader, 1);

	r->in = in;
	r->out = g_byte_array_new();
	armor_init(&r->armor, false, emit_array, r->out);
	return r;
}

/* Decodes the next piece of in into r->out. */
static void
refill(struct sg_openpgp_reader *r)
{
	guint8 buf[CHUNK];
	size_t n = 0;

	g_byte_array_set_size(r->out, 0);
	r->pos = 0;
	while (r->rc == 0 && !r->done && r->out->len == 0) {
		r->rc = r->in->read(r->in->ctx, buf, sizeof(buf), &n);
		if (r->rc < 0)
			break;
		if (n == 0) {
			r->done = true;
			if (!armor_finish(&r->armor))
				r->rc = SG_EMALFORMED;
		} else if (!armor_feed(&r->armor, buf, n)) {
			r->rc = SG_EMALFORMED;
		}
	}
}

int
sg_openpgp_reader_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct sg_openpgp_reader *r = ctx;

	*nread = 0;
	if (r->pos == r->out->len)
		refill(r);
	/* Malformed armor counts even after what was decoded of it. */
	if (r->rc < 0)
		return r->rc;
	*nread = MIN(len, r->out->len - r->pos);
	if (*nread > 0)
		memcpy(buf, r->out->data + r->pos, *nread);
	r->pos += *nread;
	return SG_OK;
}

void
sg_openpgp_reader_free(struct sg_openpgp_reader *r)
{
	if (r == NULL)
		return;
	g_byte_array_free(r->out, TRUE);
	g_free(r);
}
