/* Rewriting a message into its protected form, as data: the entity that
 * gets encrypted and the header edits that go with the new body. */
#ifndef SEALGATE_REWRITE_H
#define SEALGATE_REWRITE_H

#include <stdbool.h>

#include <glib.h>

#include "sealgate/edits.h"
#include "sealgate/msg.h"

/* The top-level Content-* header fields in their order, CRLF line ends,
 * followed by the empty line: with the body, the entity that gets
 * encrypted. (transfer full) */
GString *sg_rewrite_content_headers(const struct sg_msg *msg);

/* True when an envelope recipient is not named in To or Cc (a Bcc), so
 * recipients' key ids must not be visible. */
bool sg_rewrite_has_hidden_recipient(const struct sg_msg *msg);

/* Appends the header edits for a new body of type ctype: every Content-*
 * field but Content-Type is deleted, Content-Type is replaced (or added),
 * the extra fields (name, value pairs, NULL-terminated) are added, and
 * MIME-Version is added when missing. */
void sg_rewrite_content_edits(const struct sg_msg *msg, const char *ctype,
			      const char *const *extra, struct sg_edits *ed);

#endif
