/* Envelope addresses in canonical form (DESIGN.md §4 rule 7): the one
 * function every front end passes MAIL FROM and RCPT TO through before
 * anything is decided from them. */
#ifndef SEALGATE_ADDR_H
#define SEALGATE_ADDR_H

#include "sealgate/error.h"

/* Longest canonical address (RFC 5321 path limit without the brackets). */
#define SG_ADDR_MAX 254
/* Longest argument looked at; anything longer is refused unread. */
#define SG_ADDR_ARG_MAX 1024

/*
 * The address an MTA argument denotes, the way the MTA resolves it:
 * "<@relay:Carol@Partner.Example.> NOTIFY=NEVER" -> "Carol@partner.example".
 *
 * - angle brackets and ESMTP parameters go, so does a source route
 *   ("@a,@b:") in front of the mailbox;
 * - the local part is kept as written (case included) but in one form:
 *   a quoted string whose content is a dot-atom loses its quotes
 *   ("\"carol\"" -> "carol", "\"ca\\rol\"" -> "carol"); other content is
 *   quoted with only '"' and '\' escaped ("a..b" -> "\"a..b\"");
 * - the domain loses one trailing dot and is lower-cased; a domain with
 *   non-ASCII labels becomes its A-labels (IDNA, g_hostname_to_ascii), and
 *   an A-label that does not decode is refused; an address literal
 *   "[IPv4]" or "[IPv6:...]" is written in its normal text form.
 *
 * "<>" gives "" (the null sender); the caller decides whether it may
 * stand. Anything that is not one address (no domain, unbalanced quotes or
 * brackets, several '@', control characters, invalid UTF-8, over
 * SG_ADDR_MAX) is SG_EINVAL with the reason in err, never guessed at.
 * *out: (transfer full), untouched on failure.
 */
int sg_addr_canon(const char *arg, char **out, struct sg_err *err);

/*
 * A recipient: sg_addr_canon, not empty, and no routing inside the local
 * part. An MTA may send "user%other.example@local", "other.example!user@local"
 * or "\"user@other.example\"@local" to other.example (Postfix's
 * allow_percent_hack, swap_bangpath and resolve_dequoted_address, on by
 * default for its own domains), which no decision made from the address
 * as written would see: such local parts are refused (SG_EINVAL).
 */
int sg_addr_canon_rcpt(const char *arg, char **out, struct sg_err *err);

/*
 * The form in which an address of a key, a certificate or the deactivated
 * list is compared with an envelope address: sg_addr_canon, then letter
 * case folded (ASCII), as keys have always been matched. NULL for what is
 * not one address or is empty. For sg_keystore_snapshot. (transfer full)
 */
char *sg_addr_key(const char *addr);

#endif
