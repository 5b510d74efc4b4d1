/* Header helpers shared by the policy (conditions on headers) and the
 * pipeline (Subject tags, inbound status): pure functions on header
 * values. */
#ifndef SEALGATE_HEADER_H
#define SEALGATE_HEADER_H

#include <stdbool.h>

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

#endif
