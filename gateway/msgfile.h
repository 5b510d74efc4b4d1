/* Messages read from and written to files by `sealgate process` and
 * `sealgate policy explain` (sealgate/input.h reads and writes the bytes). */
#ifndef SEALGATE_MSGFILE_H
#define SEALGATE_MSGFILE_H

#include "sealgate/input.h"

/* The client Postfix presents to non_smtpd_milters for mail from its
 * sendmail command (pickup): localhost, 127.0.0.1, no SASL login. When
 * neither --client-ip nor --auth is given, sg_cli_open assumes it
 * (sg_envelope.client_assumed). */
#define SG_LOCAL_SUBMISSION_IP "127.0.0.1"

/* Reads a message from path ("-" or NULL: standard input), keeping its
 * bytes (in a spool in spool_dir) and its header fields. */
int sg_input_read(const char *path, const char *spool_dir,
		  struct sg_input **out);

/* Writes the input with the edits applied (unchanged input: the same
 * bytes) to path ("-" or NULL: standard output). */
int sg_input_write(struct sg_input *in, const struct sg_edits *ed,
		   const char *path);

#endif
