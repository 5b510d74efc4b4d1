/* Header helpers shared by the policy (conditions on headers), the
 * pipeline (Subject tags, inbound status) and the readers of messages
 * (where a header block ends): pure functions on header values and
 * bytes. */
#ifndef SEALGATE_HEADER_H
#define SEALGATE_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#include <glib.h>

/* Appends to names the label names of an msip_labels header value
 * (MSIP_Label_<guid>_Name=...), except labels marked Enabled=false. */
void sg_mip_labels(const char *value, GPtrArray *names);

/* Text with folded lines joined (a line break before white space
 * removed); other line breaks stay. (transfer full) */
char *sg_header_unfold(const char *text);

/* Header value unfolded and RFC 2047 decoded. (transfer full) */
char *sg_header_decode(const char *value);

/* True when tag is in subject (case-insensitive, ASCII); never for an
 * empty tag. */
bool sg_subject_has_tag(const char *subject, const char *tag);

/* The Subject without tag (every case-insensitive occurrence, and the
 * white space that separated it), or NULL when tag is not in it.
 * (transfer full) */
char *sg_subject_strip_tag(const char *subject, const char *tag);

/* A Subject header value for text: RFC 2047 encoded when it is not ASCII,
 * folded. (transfer full) */
char *sg_subject_encode(const char *text);

/* The end of a header block: its first empty line, a line with nothing
 * (or only a CR) before its LF. Fed in pieces, so that a header block is
 * found in a stream without holding more of it than the caller wants. */
struct sg_header_end {
	guint64 seen;           /* bytes fed so far */
	int state;
	bool found;
	guint64 body;           /* once found: the offset just past the empty
				 * line, counted from the first byte fed */
};

void sg_header_end_init(struct sg_header_end *he);

/* Feeds the next len bytes; true once the empty line was seen (he->body
 * is then set and later bytes are not looked at). */
bool sg_header_end_feed(struct sg_header_end *he, const void *buf,
			size_t len);

/* The offset of the body in buf: just past the empty line that ends the
 * header block at its start; -1 when buf holds no empty line. */
gssize sg_header_end(const void *buf, size_t len);

/* True when a line of a header block (without its LF) is the empty line
 * that ends the block: nothing, or a lone CR. */
bool sg_header_line_empty(const char *line, size_t len);

#endif
