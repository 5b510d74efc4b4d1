/* Who may sign as an address (DESIGN.md §4 rule 8): the sender-login map
 * of gateway.sender_logins, and the rule that decides from it, the SMTP
 * AUTH login and the client's address. */
#ifndef SEALGATE_LOGINS_H
#define SEALGATE_LOGINS_H

#include <stdbool.h>
#include <stddef.h>

#include <glib.h>

#include "sealgate/error.h"

/* Bounds on the file (DESIGN.md §4 rule 4). */
#define SG_LOGINS_MAX_FILE (16 * 1024 * 1024)
#define SG_LOGINS_MAX_LINE 4096

/* An address (or "@domain") -> the logins that own it. */
struct sg_logins;

/*
 * Reads a file in the format of Postfix's smtpd_sender_login_maps source
 * text: per line an address or "@domain", white space, then the logins
 * that may use it, separated by commas and/or white space; a line that
 * starts with white space continues the logins of the line before; empty
 * lines and lines whose first non-blank character is '#' are ignored.
 * Keys and logins that are addresses are made canonical (sealgate/addr.h).
 *
 * A file that cannot be read: SG_EIO with the reason in err (the caller
 * knows where it was named). Problems in the text: SG_ECONFIG, and one
 * "PATH:LINE:COL: message" per problem appended to errors (char *).
 * (transfer full)
 */
int sg_logins_load(const char *path, GPtrArray *errors, struct sg_err *err,
		   struct sg_logins **out);
void sg_logins_free(struct sg_logins *l);

/* The logins that own canonical addr: those of its own line, else those of
 * its "@domain" line; NULL when the file names neither. *key (may be NULL)
 * receives the line's key. */
const GPtrArray *sg_logins_owners(const struct sg_logins *l, const char *addr,
				  const char **key);

/* A login in the form it is compared in: canonical when it is an address,
 * lower case (ASCII). NULL when it is not usable. (transfer full) */
char *sg_login_canon(const char *login);

#endif
