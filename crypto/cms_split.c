/* A CMS object read from a spool (a struct sg_source) without holding its
 * content: the
 * skeleton -- the object with its (encrypted or signed) content left out,
 * the elements around the content re-encoded with definite lengths, all
 * others copied as they are -- goes to memory, where sealgate checks it
 * and OpenSSL parses it; the content is read from the spool while OpenSSL
 * decrypts or verifies it, as CMS detached content. So a 50 MB message
 * costs a few kilobytes of memory, not two copies of its DER.
 *
 *   ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
 *   (Auth)EnvelopedData ::= SEQUENCE { version, [0] originatorInfo OPTIONAL,
 *       recipientInfos SET, (auth)encryptedContentInfo SEQUENCE, ... }
 *   EncryptedContentInfo ::= SEQUENCE { contentType, algorithm,
 *       encryptedContent [0] IMPLICIT OCTET STRING OPTIONAL }
 *   SignedData ::= SEQUENCE { version, digestAlgorithms SET,
 *       encapContentInfo SEQUENCE, ... }
 *   EncapsulatedContentInfo ::= SEQUENCE { eContentType,
 *       eContent [0] EXPLICIT OCTET STRING OPTIONAL }
 *
 * The content's OCTET STRING may be primitive or, in BER, constructed of
 * OCTET STRING chunks (also nested, also of indefinite length), as mail
 * programs write it. Only what sits on the way to the content is parsed
 * here; everything else is OpenSSL's to read. */
#include <string.h>

#include "smime_int.h"

#define WINDOW 65536
#define MAX_DEPTH 32
/* The skeleton holds recipient infos, certificates and attributes: far
 * less than this for any real message. */
#define SKELETON_MAX (4 * 1024 * 1024)

enum { UNIVERSAL = 0, CONTEXT = 2 };
enum { TAG_OCTET_STRING = 4, TAG_SEQUENCE = 16 };

/* Buffered reads of the source: a window of it in memory. */
struct cursor {
	struct sg_source src;
	off_t size;
	off_t win_off;
	size_t win_len;
	bool io_error;
	unsigned char win[WINDOW];
};

/* One BER element's header. */
struct tlv {
	off_t off;              /* where the header starts */
	size_t hlen;
	int cls;
	bool cons;
	unsigned tag;
	bool indef;
	guint64 len;            /* content length when definite */
};

static void
cursor_init(struct cursor *c, const struct sg_source *src)
{
	c->src = *src;
	c->size = src->size;
	c->win_off = 0;
	c->win_len = 0;
	c->io_error = false;
}

/* Up to want bytes at off (fewer at the end of the source): *avail says
 * how many; NULL when none can be read. */
static const unsigned char *
peek(struct cursor *c, off_t off, size_t want, size_t *avail)
{
	size_t n;

	*avail = 0;
	if (off < 0 || off >= c->size)
		return NULL;
	if (off < c->win_off || off + (off_t)MIN(want, (size_t)(c->size - off)) >
	    c->win_off + (off_t)c->win_len) {
		c->win_off = off;
		c->win_len = 0;
		while (c->win_len < sizeof(c->win) && off + (off_t)c->win_len <
		    c->size) {
			if (c->src.read_at(c->src.ctx, off + (off_t)c->win_len,
			    c->win + c->win_len, sizeof(c->win) - c->win_len,
			    &n) < 0 || n == 0) {
				c->io_error = true;
				return NULL;
			}
			c->win_len += n;
		}
	}
	*avail = MIN(want, c->win_len - (size_t)(off - c->win_off));
	return c->win + (off - c->win_off);
}

/* The header at off of an element that must end by limit: low tag
 * numbers only, lengths of up to 8 bytes, indefinite only when
 * constructed. */
static bool
read_tlv(struct cursor *c, off_t off, off_t limit, struct tlv *t)
{
	const unsigned char *p;
	size_t avail, k;

	p = peek(c, off, 10, &avail);
	if (p == NULL || avail < 2 || (p[0] & 0x1f) == 0x1f)
		return false;
	t->off = off;
	t->cls = p[0] >> 6;
	t->cons = (p[0] & 0x20) != 0;
	t->tag = p[0] & 0x1f;
	t->indef = p[1] == 0x80;
	t->len = 0;
	t->hlen = 2;
	if (t->cls == UNIVERSAL && t->tag == 0)
		return false;           /* end-of-contents is no element */
	if (t->indef)
		return t->cons;
	if (p[1] & 0x80) {
		k = p[1] & 0x7f;
		if (k > 8 || avail < 2 + k)
			return false;
		for (size_t i = 0; i < k; i++) {
			if (t->len >> 55)
				return false;
			t->len = (t->len << 8) | p[2 + i];
		}
		t->hlen += k;
	} else {
		t->len = p[1];
	}
	return t->len <= (guint64)(limit - off) &&
	    (off_t)(t->hlen + t->len) <= limit - off;
}

static bool
at_eoc(struct cursor *c, off_t off, off_t limit)
{
	size_t avail;
	const unsigned char *p = off + 2 <= limit ? peek(c, off, 2, &avail)
	    : NULL;

	return p != NULL && avail == 2 && p[0] == 0 && p[1] == 0;
}

/* Where the element t ends (just past it); for an indefinite length
 * found by walking its content. */
static bool
tlv_end(struct cursor *c, const struct tlv *t, off_t limit, int depth,
	off_t *end)
{
	off_t p = t->off + (off_t)t->hlen;
	struct tlv in;

	if (!t->indef) {
		*end = p + (off_t)t->len;
		return true;
	}
	if (depth > MAX_DEPTH)
		return false;
	for (;;) {
		if (at_eoc(c, p, limit)) {
			*end = p + 2;
			return true;
		}
		if (!read_tlv(c, p, limit, &in) ||
		    !tlv_end(c, &in, limit, depth + 1, &p))
			return false;
	}
}

/* The children of a constructed element, one after the other. */
struct children {
	off_t p;
	off_t end;              /* definite: where the content ends */
	off_t limit;            /* how far a child may reach */
	bool indef;
	off_t after;            /* set at the end: just past the parent */
};

static void
children_init(struct children *ch, const struct tlv *t, off_t limit)
{
	ch->p = t->off + (off_t)t->hlen;
	ch->indef = t->indef;
	ch->end = t->indef ? limit : ch->p + (off_t)t->len;
	ch->limit = ch->end;
	ch->after = -1;
}

/* 1: the next child in *t (it ends at *end); 0: no more (ch->after is
 * set); -1: malformed. */
static int
children_next(struct cursor *c, struct children *ch, struct tlv *t,
	      off_t *end)
{
	if (!ch->indef && ch->p == ch->end) {
		ch->after = ch->end;
		return 0;
	}
	if (ch->indef && at_eoc(c, ch->p, ch->limit)) {
		ch->after = ch->p + 2;
		return 0;
	}
	if (!read_tlv(c, ch->p, ch->limit, t) ||
	    !tlv_end(c, t, ch->limit, 0, end))
		return -1;
	ch->p = *end;
	return 1;
}

static bool
append_raw(struct cursor *c, GByteArray *out, off_t from, off_t to)
{
	const unsigned char *p;
	size_t avail;

	if ((guint64)out->len + (guint64)(to - from) > SKELETON_MAX)
		return false;
	while (from < to) {
		p = peek(c, from, (size_t)MIN(to - from, (off_t)WINDOW), &avail);
		if (p == NULL || avail == 0)
			return false;
		g_byte_array_append(out, p, (guint)avail);
		from += (off_t)avail;
	}
	return true;
}

/* The identifier octet of t, then a definite length of len. */
static void
append_header(GByteArray *out, const struct tlv *t, size_t len)
{
	guint8 h[10];
	size_t n = 0, k = 0;

	h[n++] = (guint8)((t->cls << 6) | (t->cons ? 0x20 : 0) | t->tag);
	if (len < 0x80) {
		h[n++] = (guint8)len;
	} else {
		for (size_t v = len; v > 0; v >>= 8)
			k++;
		h[n++] = (guint8)(0x80 | k);
		for (size_t i = k; i > 0; i--)
			h[n++] = (guint8)(len >> (8 * (i - 1)));
	}
	g_byte_array_append(out, h, (guint)n);
}

static bool
is(const struct tlv *t, int cls, unsigned tag, bool cons)
{
	return t->cls == cls && t->tag == tag && t->cons == cons;
}

/* The steps from the ContentInfo down to the content: at each level,
 * which child leads on. The last level's chosen child is the content
 * element, left out of the skeleton. */
enum step { PICK_SECOND, PICK_FIRST, PICK_FIRST_SEQUENCE, PICK_CONTEXT_0 };

static const enum step path[] = {
	PICK_SECOND,            /* ContentInfo: the [0] EXPLICIT content */
	PICK_FIRST,             /* [0]: the (Auth)EnvelopedData or SignedData */
	PICK_FIRST_SEQUENCE,    /* its (encrypted or encapsulated) content info */
	PICK_CONTEXT_0,         /* the content: [0] */
};

static bool
picked(enum step s, unsigned index, const struct tlv *t)
{
	switch (s) {
	case PICK_SECOND:
		return index == 1;
	case PICK_FIRST:
		return index == 0;
	case PICK_FIRST_SEQUENCE:
		return is(t, UNIVERSAL, TAG_SEQUENCE, true);
	case PICK_CONTEXT_0:
		return t->cls == CONTEXT && t->tag == 0;
	}
	return false;
}

/* The skeleton of element t at path level: its children, the one on the
 * path rebuilt (or, on the last level, left out and described in
 * content), under a new definite-length header. */
static bool
rebuild(struct cursor *c, const struct tlv *t, off_t limit, unsigned level,
	GByteArray *out, struct sg_cms_content *content)
{
	GByteArray *inner = g_byte_array_new();
	struct children ch;
	struct tlv child;
	off_t end;
	unsigned index = 0;
	bool found = false, ok = true;
	int more;

	children_init(&ch, t, limit);
	while (ok && (more = children_next(c, &ch, &child, &end)) > 0) {
		bool on_path = !found && picked(path[level], index++, &child);

		if (!on_path) {
			ok = append_raw(c, inner, child.off, end);
		} else if (level + 1 < G_N_ELEMENTS(path)) {
			ok = child.cons && rebuild(c, &child, ch.limit, level + 1,
			    inner, content);
		} else {
			content->off = child.off;
			content->limit = ch.limit;
		}
		found = found || on_path;
	}
	ok = ok && more == 0 && found && inner->len <= SKELETON_MAX;
	if (ok) {
		append_header(out, t, inner->len);
		g_byte_array_append(out, inner->data, inner->len);
	}
	g_byte_array_free(inner, TRUE);
	return ok;
}

/* Signed-data's [0] EXPLICIT around the OCTET STRING: the content is
 * that OCTET STRING, and nothing else is in the [0]. */
static bool
unwrap_explicit(struct cursor *c, struct sg_cms_content *content)
{
	struct tlv outer, inner;
	off_t outer_end, inner_end;

	if (!read_tlv(c, content->off, content->limit, &outer) || !outer.cons ||
	    !tlv_end(c, &outer, content->limit, 0, &outer_end))
		return false;
	if (!outer.indef)
		content->limit = outer_end;
	if (!read_tlv(c, outer.off + (off_t)outer.hlen, content->limit, &inner) ||
	    !is(&inner, UNIVERSAL, TAG_OCTET_STRING, inner.cons) ||
	    !tlv_end(c, &inner, content->limit, 0, &inner_end))
		return false;
	content->off = inner.off;
	return outer.indef ? inner_end + 2 == outer_end : inner_end == outer_end;
}

int
sg_cms_split(const struct sg_source *der, bool explicit_content,
	     GByteArray **skeleton, struct sg_cms_content *content,
	     struct sg_err *err)
{
	struct cursor *c = g_new(struct cursor, 1);
	GByteArray *skel = g_byte_array_new();
	struct sg_cms_content found = { *der, 0, 0, 0 };
	struct tlv top;
	int rc = SG_OK;

	cursor_init(c, der);
	if (!read_tlv(c, 0, c->size, &top) ||
	    !is(&top, UNIVERSAL, TAG_SEQUENCE, true) ||
	    !tlv_end(c, &top, c->size, 0, &found.top_end) ||
	    !rebuild(c, &top, c->size, 0, skel, &found) ||
	    (explicit_content && !unwrap_explicit(c, &found)) ||
	    !sg_cms_content_check(&found))
		rc = sg_err_set(err, c->io_error ? SG_EIO : SG_EMALFORMED,
		    c->io_error ? "cannot read the CMS object"
		    : "not a CMS object with its content");
	if (rc == 0) {
		*skeleton = skel;
		*content = found;
	} else {
		g_byte_array_free(skel, TRUE);
	}
	g_free(c);
	return rc;
}

/* Reading the content ------------------------------------------------ */

struct frame {
	off_t end;              /* definite: where it ends */
	off_t limit;
	bool indef;
};

struct sg_cms_reader {
	struct cursor c;
	off_t pos;
	guint64 left;           /* bytes of the current chunk still to read */
	int depth;
	struct frame stack[MAX_DEPTH + 1];
	bool malformed;
};

/* Pushes a constructed OCTET STRING (or the [0] around the chunks). */
static bool
push(struct sg_cms_reader *r, const struct tlv *t, off_t limit)
{
	struct frame *f;

	if (r->depth > MAX_DEPTH)
		return false;
	f = &r->stack[r->depth++];
	f->indef = t->indef;
	f->end = t->indef ? 0 : t->off + (off_t)(t->hlen + t->len);
	f->limit = t->indef ? limit : f->end;
	r->pos = t->off + (off_t)t->hlen;
	return true;
}

/* Moves to the next chunk of content bytes: 1, or 0 at the end of the
 * content, or -1 when it is malformed. */
static int
next_chunk(struct sg_cms_reader *r)
{
	struct tlv t;

	while (r->left == 0) {
		struct frame *f;

		if (r->depth == 0)
			return 0;
		f = &r->stack[r->depth - 1];
		if (!f->indef && r->pos == f->end) {
			r->depth--;
			continue;
		}
		if (f->indef && at_eoc(&r->c, r->pos, f->limit)) {
			r->pos += 2;
			r->depth--;
			continue;
		}
		if (!read_tlv(&r->c, r->pos, f->limit, &t) ||
		    !is(&t, UNIVERSAL, TAG_OCTET_STRING, t.cons))
			return -1;
		if (t.cons) {
			if (!push(r, &t, f->limit))
				return -1;
			continue;
		}
		r->pos = t.off + (off_t)t.hlen;
		r->left = t.len;
	}
	return 1;
}

/* Sets r to the first byte of the content: the element at content->off
 * is an OCTET STRING, primitive or made of chunks (whatever its tag). */
static bool
reader_start(struct sg_cms_reader *r, const struct sg_cms_content *content)
{
	struct tlv t;

	cursor_init(&r->c, &content->src);
	r->depth = 0;
	r->left = 0;
	r->malformed = false;
	if (!read_tlv(&r->c, content->off, content->limit, &t))
		return false;
	if (t.cons)
		return push(r, &t, content->limit);
	r->pos = t.off + (off_t)t.hlen;
	r->left = t.len;
	return true;
}

bool
sg_cms_content_check(const struct sg_cms_content *content)
{
	struct sg_cms_reader *r = g_new(struct sg_cms_reader, 1);
	bool ok = reader_start(r, content);
	int more = 1;

	/* Every chunk header, skipping the bytes. */
	while (ok && (more = next_chunk(r)) > 0) {
		r->pos += (off_t)r->left;
		r->left = 0;
	}
	ok = ok && more == 0;
	g_free(r);
	return ok;
}

struct sg_cms_reader *
sg_cms_reader_new(const struct sg_cms_content *content)
{
	struct sg_cms_reader *r = g_new(struct sg_cms_reader, 1);

	if (!reader_start(r, content))
		r->malformed = true;
	return r;
}

int
sg_cms_reader_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct sg_cms_reader *r = ctx;
	const unsigned char *p;
	size_t avail;
	int more;

	*nread = 0;
	if (r->malformed)
		return SG_EMALFORMED;
	if (r->left == 0 && (more = next_chunk(r)) <= 0) {
		if (more < 0)
			r->malformed = true;
		return more < 0 ? SG_EMALFORMED : SG_OK;
	}
	p = peek(&r->c, r->pos, (size_t)MIN((guint64)len, r->left), &avail);
	if (p == NULL || avail == 0)
		return SG_EIO;
	memcpy(buf, p, avail);
	r->pos += (off_t)avail;
	r->left -= avail;
	*nread = avail;
	return SG_OK;
}

bool
sg_cms_reader_io_error(const struct sg_cms_reader *r)
{
	return r->c.io_error;
}

void
sg_cms_reader_free(struct sg_cms_reader *r)
{
	g_free(r);
}
