/* A message as bytes, the way an MTA hands it to a milter: its header
 * fields read from the header block, the body after the empty line; and
 * the same bytes written back with the pipeline's edits applied, the way
 * an MTA applies them. Used by `sealgate process` and `policy explain`
 * (message files) and by the fuzz targets (bytes). */
#ifndef SEALGATE_INPUT_H
#define SEALGATE_INPUT_H

#include <stdbool.h>
#include <stdio.h>

#include <glib.h>

#include "sealgate/edits.h"
#include "sealgate/msg.h"
#include "sealgate/spool.h"

/* An envelope: the sender and recipients (canonical, sealgate/addr.h)
 * and what the MTA says about the client. */
struct sg_envelope {
	const char *from;
	GPtrArray *to;          /* char * */
	const char *client_ip;  /* numeric; NULL: no address known */
	const char *auth;       /* SASL login, NULL: none */
	bool client_assumed;    /* the front end assumed this client */
};

struct sg_input;

/* The message whose bytes raw holds, with its header fields read.
 * (transfer full; raw too) */
struct sg_input *sg_input_new(struct sg_spool *raw);

/* A transaction with env's envelope and no content. (transfer full) */
int sg_envelope_to_msg(const struct sg_envelope *env, const char *spool_dir,
		       struct sg_msg **out);

/* The transaction the milter would build for this input. (transfer full) */
int sg_input_to_msg(struct sg_input *in, const char *spool_dir,
		    const struct sg_envelope *env, struct sg_msg **out);

/* Writes the input with the edits applied (unchanged input: the same
 * bytes) to fp; SG_EIO when writing fails, SG_EINVAL (nothing written)
 * for an edit naming a field no header can carry. */
int sg_input_write_to(struct sg_input *in, const struct sg_edits *ed,
		      FILE *fp);

void sg_input_free(struct sg_input *in);

#endif
