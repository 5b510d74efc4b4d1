/* A boundary scan over a message before GMime builds any object: counts
 * MIME entities and nesting while reading, in a few kilobytes of memory,
 * and stops at the first bound exceeded (DESIGN.md §4 rule 4). It follows
 * GMime's reading of boundaries (a line that is "--" boundary, or
 * "--" boundary "--", then only blanks, for any open multipart) and
 * counts the way sg_mime_inspect does: the top entity is level 1, the
 * parts of a multipart and the body of an embedded message one deeper. */
#include <string.h>

#include "sealgate/header.h"
#include "sealgate/mime.h"

#define LINE_CAP 8192           /* bytes of a line kept for comparison */
#define CTYPE_CAP 16384         /* bytes of a Content-Type value kept */

struct bound {
	char *marker;           /* "--" boundary */
	size_t len;
	unsigned level;         /* level of the multipart */
	bool digest;            /* parts default to message/rfc822 */
};

struct scan {
	GPtrArray *bounds;      /* open multiparts, innermost last */
	unsigned parts;
	unsigned level;         /* entity whose header or body is read */
	bool in_header;
	bool digest_parent;
	GString *ctype;         /* the entity's (last) Content-Type value */
	bool in_ctype;          /* continuation lines belong to it */
	bool ctype_cut;         /* more of it than CTYPE_CAP */
	GString *line;
	bool line_tail;         /* non-blank text beyond LINE_CAP */
};

static void
bound_free(gpointer p)
{
	struct bound *b = p;

	g_free(b->marker);
	g_free(b);
}

static bool
only_blanks(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

/* Index+1 of the open multipart whose boundary the line is (innermost
 * first), 0 for none; *end for a closing boundary. */
static guint
which_bound(const struct scan *st, bool *end)
{
	const char *l = st->line->str;
	size_t n = st->line->len;

	if (n < 2 || l[0] != '-' || l[1] != '-')
		return 0;
	for (guint i = st->bounds->len; i > 0; i--) {
		const struct bound *b = g_ptr_array_index(st->bounds, i - 1);

		if (n < b->len || memcmp(l, b->marker, b->len) != 0)
			continue;
		*end = n >= b->len + 2 && l[b->len] == '-' && l[b->len + 1] == '-' &&
		    only_blanks(l + b->len + 2, n - b->len - 2) && !st->line_tail;
		if (*end || (only_blanks(l + b->len, n - b->len) && !st->line_tail))
			return i;
	}
	return 0;
}

static int
count_entity(struct scan *st, unsigned level, struct sg_err *err)
{
	st->level = level;
	if (++st->parts > SG_MIME_MAX_PARTS || level > SG_MIME_MAX_DEPTH)
		return sg_err_set(err, SG_ELIMIT, "MIME nesting deeper than %d "
		    "levels or more than %d parts", SG_MIME_MAX_DEPTH,
		    SG_MIME_MAX_PARTS);
	return SG_OK;
}

static int
on_bound(struct scan *st, guint idx, bool end, struct sg_err *err)
{
	const struct bound *b = g_ptr_array_index(st->bounds, idx - 1);
	unsigned level = b->level;
	bool digest = b->digest;

	g_ptr_array_set_size(st->bounds, end ? idx - 1 : idx);
	st->in_header = !end;
	st->in_ctype = false;
	g_string_truncate(st->ctype, 0);
	if (end) {
		st->level = level;
		return SG_OK;
	}
	st->digest_parent = digest;
	return count_entity(st, level + 1, err);
}

static bool
is_message(GMimeContentType *ct)
{
	return g_mime_content_type_is_type(ct, "message", "rfc822") ||
	    g_mime_content_type_is_type(ct, "message", "global") ||
	    g_mime_content_type_is_type(ct, "message", "news");
}

/* The header block of the current entity ended: open its multipart, or
 * go into the header of its embedded message. */
static int
end_header(struct scan *st, struct sg_err *err)
{
	GMimeContentType *ct = NULL;
	const char *boundary;
	bool message = st->digest_parent;
	int rc = SG_OK;

	st->in_header = st->in_ctype = false;
	if (st->ctype->len > 0) {
		ct = g_mime_content_type_parse(NULL, st->ctype->str);
		message = ct != NULL && is_message(ct);
	}
	g_string_truncate(st->ctype, 0);
	if (message) {
		st->in_header = true;
		st->digest_parent = false;
		rc = count_entity(st, st->level + 1, err);
	} else if (ct != NULL &&
	    g_mime_content_type_is_type(ct, "multipart", "*") &&
	    (boundary = g_mime_content_type_get_parameter(ct, "boundary")) != NULL) {
		struct bound *b = g_new0(struct bound, 1);

		b->marker = g_strconcat("--", boundary, NULL);
		b->len = strlen(b->marker);
		b->level = st->level;
		b->digest = g_mime_content_type_is_type(ct, "multipart", "digest");
		g_ptr_array_add(st->bounds, b);
	}
	if (ct != NULL)
		g_object_unref(ct);
	return rc;
}

static void
ctype_append(struct scan *st, const char *p, size_t n)
{
	size_t room = CTYPE_CAP - MIN(CTYPE_CAP, st->ctype->len);

	if (n > room || st->line_tail)
		st->ctype_cut = true;
	n = MIN(n, room);
	g_string_append_len(st->ctype, p, (gssize)n);
	g_strdelimit(st->ctype->str, "\r", ' ');
}

/* A Content-Type longer than what is kept could hide its boundary from
 * the count while the parser still builds every part: refused. */
static int
ctype_whole(const struct scan *st, struct sg_err *err)
{
	if (st->in_ctype && st->ctype_cut)
		return sg_err_set(err, SG_EMALFORMED, "Content-Type field longer "
		    "than %d bytes", CTYPE_CAP);
	return SG_OK;
}

/* A header line: Content-Type starts being collected (the last one
 * counts); a line that is no header field ends the header block. */
static int
header_line(struct scan *st, struct sg_err *err)
{
	const char *l = st->line->str, *colon;
	size_t n = st->line->len, name;

	if (l[0] == ' ' || l[0] == '\t') {
		if (st->in_ctype)
			ctype_append(st, l, n);
		return ctype_whole(st, err);
	}
	colon = memchr(l, ':', n);
	if (colon == NULL)
		return end_header(st, err);
	name = (size_t)(colon - l);
	while (name > 0 && (l[name - 1] == ' ' || l[name - 1] == '\t'))
		name--;
	st->in_ctype = name == 12 && g_ascii_strncasecmp(l, "Content-Type", 12) == 0;
	if (st->in_ctype) {
		g_string_truncate(st->ctype, 0);
		st->ctype_cut = false;
		ctype_append(st, colon + 1, n - (size_t)(colon + 1 - l));
	}
	return ctype_whole(st, err);
}

static int
on_line(struct scan *st, struct sg_err *err)
{
	const char *l = st->line->str;
	size_t n = st->line->len;
	bool end = false;
	guint idx = which_bound(st, &end);

	if (idx > 0)
		return on_bound(st, idx, end, err);
	if (!st->in_header)
		return SG_OK;
	if (sg_header_line_empty(l, n))
		return end_header(st, err);
	return header_line(st, err);
}

static void
line_add(struct scan *st, const char *p, size_t n)
{
	size_t keep = MIN(n, LINE_CAP - MIN(LINE_CAP, st->line->len));

	g_string_append_len(st->line, p, (gssize)keep);
	if (!st->line_tail && !only_blanks(p + keep, n - keep))
		st->line_tail = true;
}

int
sg_mime_prescan(GMimeStream *stream, struct sg_err *err)
{
	struct scan st = { 0 };
	char buf[16384];
	ssize_t n = 0;
	int rc;

	st.bounds = g_ptr_array_new_with_free_func(bound_free);
	st.ctype = g_string_new(NULL);
	st.line = g_string_sized_new(256);
	st.in_header = true;
	rc = count_entity(&st, 1, err);
	while (rc == 0 && (n = g_mime_stream_read(stream, buf, sizeof(buf))) > 0) {
		const char *p = buf, *e = buf + n, *nl;

		while (rc == 0 && p < e) {
			nl = memchr(p, '\n', (size_t)(e - p));
			line_add(&st, p, (size_t)((nl != NULL ? nl : e) - p));
			if (nl == NULL)
				break;
			rc = on_line(&st, err);
			g_string_truncate(st.line, 0);
			st.line_tail = false;
			p = nl + 1;
		}
	}
	/* A bounded GMime stream answers -1 at its end. */
	if (rc == 0 && n < 0 && !g_mime_stream_eos(stream))
		rc = sg_err_set(err, SG_EIO, "cannot read the message");
	if (rc == 0 && st.line->len > 0)
		rc = on_line(&st, err);
	g_ptr_array_free(st.bounds, TRUE);
	g_string_free(st.ctype, TRUE);
	g_string_free(st.line, TRUE);
	return rc;
}
