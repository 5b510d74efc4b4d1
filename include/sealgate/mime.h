/* MIME helpers on top of GMime: inspecting a message before it is
 * processed, and the fixed parts of the structures sealgate writes. */
#ifndef SEALGATE_MIME_H
#define SEALGATE_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include <gmime/gmime.h>

#include "sealgate/error.h"

#define SG_MIME_MAX_DEPTH 32
#define SG_MIME_MAX_PARTS 10000
/* Bytes of text (besides white space) allowed in clear around encrypted
 * data that passes as already encrypted: the MIME preamble and epilogue
 * of PGP/MIME, each. */
#define SG_MIME_MAX_CLEAR_TEXT 256
/* ... and the header fields of each of its two parts: names and values. */
#define SG_MIME_MAX_PART_HEADER 1024

/* How the whole message is already protected. */
enum sg_protection {
	SG_PROT_NONE = 0,
	SG_PROT_PGP_MIME,     /* multipart/encrypted, application/pgp-encrypted */
	SG_PROT_PGP_INLINE,   /* text/plain that is an armored PGP message */
	SG_PROT_SMIME,        /* application/pkcs7-mime enveloped or authEnveloped */
	SG_PROT_ENCRYPTED,    /* another multipart/encrypted protocol */
};

struct sg_mime_info {
	enum sg_protection protection; /* what the labels say */
	unsigned depth;       /* deepest nesting level, top level = 1 */
	unsigned parts;       /* number of MIME entities */
};

/* Parses the message in stream (headers and body) and describes it.
 * SG_EMALFORMED when GMime finds a structural problem that makes the
 * message's meaning uncertain (conflicting headers, multipart without
 * boundary, ...); SG_ELIMIT for nesting beyond SG_MIME_MAX_DEPTH or more
 * than SG_MIME_MAX_PARTS parts; err says which. On success *parsed (when
 * parsed is not NULL) receives the message as parsed, so that nobody
 * parses it again: its parts' content stays in stream and is read from
 * there when used (GMime's persistent stream), so the bytes of stream
 * must not change while the message lives. What the content really is
 * (sg_mime_encrypted_as) is left to the caller: it reads the content.
 * (transfer full: *parsed) */
int sg_mime_inspect(GMimeStream *stream, struct sg_mime_info *out,
		    GMimeMessage **parsed, struct sg_err *err);

/* Counts the entities and the nesting of the message in stream by its
 * boundaries, before anything is parsed, and stops at the first bound
 * exceeded: SG_ELIMIT beyond SG_MIME_MAX_DEPTH levels or
 * SG_MIME_MAX_PARTS entities (counted as sg_mime_inspect counts them).
 * Reads the stream once in constant memory. sg_mime_inspect runs it
 * first. */
int sg_mime_prescan(GMimeStream *stream, struct sg_err *err);

const char *sg_mime_protection_name(enum sg_protection prot);

/* How obj, taken as the whole message, is labelled as protected. */
enum sg_protection sg_mime_protection_of(GMimeObject *obj);

/* How obj, taken as the whole message, is really encrypted, judged from
 * the content: PGP/MIME whose control part says "Version: 1" and whose
 * second part is an encrypted OpenPGP message (sg_openpgp_is_encrypted),
 * with little text around the parts; a text/plain or
 * application/pgp-encrypted body that is one; application/pkcs7-mime
 * whose content is CMS (Auth)EnvelopedData (sg_smime_is_enveloped).
 * SG_PROT_NONE for anything else, whatever its labels say. */
enum sg_protection sg_mime_encrypted_as(GMimeObject *obj);

/* The decoded content of a leaf part; NULL for anything else or when it
 * cannot be decoded. (transfer full) */
GByteArray *sg_mime_part_content(GMimeObject *obj);

/* The decoded content of a leaf part as a stream of its own, decoded as
 * it is read from where the content lies (for a message parsed from a
 * spool: the spool), so that it is never held in memory; NULL for
 * anything else. (transfer full) */
GMimeStream *sg_mime_part_stream(GMimeObject *obj);

/* raw (the content of an entity exactly as it arrived) decoded as its
 * Content-Transfer-Encoding says, while it is read. (transfer full) */
GMimeStream *sg_mime_decode_stream(GMimeStream *raw,
				   GMimeContentEncoding encoding);

/* The read of a struct sg_reader over a GMimeStream (ctx): *nread 0 at
 * its end, SG_EIO when it cannot be read. */
int sg_mime_stream_read(void *ctx, void *buf, size_t len, size_t *nread);

/* True when an encrypted part sits inside the message next to or below
 * other parts (call with depth 1 for the top level). */
bool sg_mime_has_nested_encryption(GMimeObject *obj, unsigned depth);

/* A fresh random boundary that cannot occur in base64 or armor. */
void sg_mime_boundary(char *buf, size_t len);

/* RFC 3156 multipart/encrypted: the Content-Type value, and the text that
 * goes before and after the ASCII armor. (transfer full, g_free) */
char *sg_mime_pgp_encrypted_type(const char *boundary);
char *sg_mime_pgp_encrypted_head(const char *boundary);
char *sg_mime_pgp_encrypted_tail(const char *boundary);

/* The MIME entity in in (header block and body) made safe for 7-bit
 * transport: leaves with 8-bit or binary content or lines over 998
 * characters get quoted-printable or base64; CRLF line ends. When in is
 * already 7-bit clean it is returned as it is (*changed false). The
 * result is seekable. (transfer full) */
GMimeStream *sg_mime_entity_7bit(GMimeStream *in, bool *changed,
				 struct sg_err *err);

/* RFC 1847 multipart/signed Content-Type value. (transfer full) */
char *sg_mime_signed_type(const char *protocol, const char *micalg,
			  const char *boundary);

#endif
