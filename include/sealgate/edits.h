/* The result of the pipeline for the MTA: header operations plus an
 * optional replacement body. Milters can only do this much (DESIGN.md §2),
 * so `sealgate process` gets exactly the same list. */
#ifndef SEALGATE_EDITS_H
#define SEALGATE_EDITS_H

#include <stdbool.h>

#include <glib.h>

#include "sealgate/spool.h"

enum sg_hdr_op {
	SG_HDR_ADD,     /* append name: value at the end of the header */
	SG_HDR_CHANGE,  /* replace the index-th (1-based) field called name */
	SG_HDR_DELETE,  /* remove the index-th (1-based) field called name */
};

struct sg_hdr_edit {
	enum sg_hdr_op op;
	char *name;
	char *value;    /* NULL for SG_HDR_DELETE */
	unsigned index; /* occurrence among fields with this name, from 1 */
};

struct sg_edits {
	GPtrArray *hdr;         /* struct sg_hdr_edit *, applied in order */
	struct sg_spool *body;  /* new body (CRLF) or NULL: body unchanged */
};

/* True when name can be a header field name: printable ASCII without
 * white space or colon (RFC 5322 §2.2), 1 to 998 characters. */
bool sg_header_name_ok(const char *name);

void sg_edits_init(struct sg_edits *ed);
int sg_edits_add(struct sg_edits *ed, enum sg_hdr_op op, const char *name,
		 unsigned index, const char *value);
bool sg_edits_empty(const struct sg_edits *ed);
/* Frees what the edit list holds (not ed itself). */
void sg_edits_clear(struct sg_edits *ed);

#endif
