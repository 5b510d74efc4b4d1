/* One message transaction as the MTA hands it over: envelope, header fields
 * and the message bytes in a spool. Filled by the milter callbacks or by
 * `sealgate process`, read by the pipeline. */
#ifndef SEALGATE_MSG_H
#define SEALGATE_MSG_H

#include <stdbool.h>
#include <sys/types.h>

#include <glib.h>

#include "sealgate/error.h"
#include "sealgate/spool.h"

/* Bounds on what the MTA hands over (DESIGN.md §4 rule 4). */
#define SG_MAX_HEADERS 1000
#define SG_MAX_HEADER_SIZE (64 * 1024)
#define SG_MAX_RECIPIENTS 1000

/* A header field as the MTA passes it: value without the leading
 * white space, folded lines joined by "\n" followed by white space. */
struct sg_header {
	char *name;
	char *value;
};

/* Which body a recipient needs; recipients of different classes are never
 * served from one transaction (DESIGN.md §4 rule 6). */
enum sg_class {
	SG_CLASS_NONE = 0,  /* not classified yet */
	SG_CLASS_PASS,      /* not outbound mail: passed on as it is */
	SG_CLASS_INTERNAL,  /* outbound mail, internal recipient */
	SG_CLASS_PLAIN,     /* external recipient without a usable key */
	SG_CLASS_OPENPGP,   /* external recipient with an OpenPGP key */
	SG_CLASS_SMIME,     /* external recipient with an S/MIME certificate */
};

struct sg_rcpt {
	char *addr;         /* canonical address (sg_addr_canon) */
	enum sg_class cls;  /* decided at RCPT time, SG_CLASS_NONE if not */
	char *key_fpr;      /* the key or certificate found for its class */
};

struct sg_msg {
	char *queue_id;     /* "NOQUEUE" until known */
	char *client_ip;    /* NULL when unknown */
	char *auth_user;    /* SASL login, NULL when none */
	char *mail_from;    /* canonical envelope sender, "" for <> */
	GPtrArray *rcpts;   /* struct sg_rcpt * */
	GPtrArray *headers; /* struct sg_header * */
	struct sg_spool *spool; /* header block, empty line, body; CRLF */
	off_t body_offset;
	bool in_body;
	int limit_error;    /* SG_ELIMIT once a bound was exceeded */
	char limit_what[64];
};

/* New empty message whose spool moves to spool_dir above 1 MiB. */
int sg_msg_new(const char *spool_dir, struct sg_msg **out);

/* Envelope addresses must be canonical (sealgate/addr.h). */
int sg_msg_set_sender(struct sg_msg *msg, const char *addr);
/* Adds a recipient with its class and key (key_fpr may be NULL). */
int sg_msg_add_rcpt(struct sg_msg *msg, const char *addr, enum sg_class cls,
		    const char *key_fpr);

/* Appends a header field; SG_ELIMIT (and msg->limit_error) past the bounds. */
int sg_msg_add_header(struct sg_msg *msg, const char *name, const char *value);

/* Ends the header block; must be called once before sg_msg_add_body. */
int sg_msg_end_headers(struct sg_msg *msg);

/* Appends body bytes; bare LF becomes CRLF. */
int sg_msg_add_body(struct sg_msg *msg, const void *buf, size_t len);

/* Value of the first header field with that name (case-insensitive). */
const char *sg_msg_header(const struct sg_msg *msg, const char *name);

/* Number of fields with that name. */
unsigned sg_msg_header_count(const struct sg_msg *msg, const char *name);

/* True for a plain local@domain address (one '@', nothing empty, no
 * white space, controls or specials). */
bool sg_addr_valid(const char *addr);

/* Domain part of an address (after the last '@'), or "" if none. */
const char *sg_addr_domain(const char *addr);

void sg_msg_free(struct sg_msg *msg);

#endif
