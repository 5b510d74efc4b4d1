/* Messages read from and written to files by `sealgate process` and
 * `sealgate policy explain`. */
#ifndef SEALGATE_MSGFILE_H
#define SEALGATE_MSGFILE_H

#include <glib.h>

#include "sealgate/edits.h"
#include "sealgate/msg.h"

/* The envelope as given on the command line; sg_cli_open makes the
 * addresses canonical (sealgate/addr.h). */
struct sg_envelope {
	const char *from;
	GPtrArray *to;          /* char * */
	const char *client_ip;  /* numeric; NULL: no address known */
	const char *auth;       /* SASL login, NULL: none */
	bool client_assumed;    /* neither --client-ip nor --auth: local
				 * submission (SG_LOCAL_SUBMISSION_IP) */
};

/* The client Postfix presents to non_smtpd_milters for mail from its
 * sendmail command (pickup): localhost, 127.0.0.1, no SASL login. */
#define SG_LOCAL_SUBMISSION_IP "127.0.0.1"

struct sg_input;

/* Reads a message from path ("-" or NULL: standard input), keeping its
 * bytes (in a spool in spool_dir) and its header fields. */
int sg_input_read(const char *path, const char *spool_dir,
		  struct sg_input **out);

/* A transaction with env's envelope and no content. (transfer full) */
int sg_envelope_to_msg(const struct sg_envelope *env, const char *spool_dir,
		       struct sg_msg **out);

/* The transaction the milter would build for this input. (transfer full) */
int sg_input_to_msg(struct sg_input *in, const char *spool_dir,
		    const struct sg_envelope *env, struct sg_msg **out);

/* Writes the input with the edits applied (unchanged input: the same
 * bytes) to path ("-" or NULL: standard output). */
int sg_input_write(struct sg_input *in, const struct sg_edits *ed,
		   const char *path);

void sg_input_free(struct sg_input *in);

#endif
