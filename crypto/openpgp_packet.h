/* OpenPGP packet and armor reading shared by crypto/openpgp_in.c
 * (session key packets of inbound mail) and crypto/encrypted.c (whether
 * mail is really encrypted). Pure byte parsing: no GPGME. */
#ifndef SEALGATE_OPENPGP_PACKET_H
#define SEALGATE_OPENPGP_PACKET_H

#include <stdbool.h>
#include <stddef.h>

#include <glib.h>

/* The binary form of data when data is exactly one armored
 * "PGP MESSAGE" block with only white space around it, armor header lines,
 * base64 lines and an optional checksum line; NULL for anything else (the
 * strict armor reader, crypto/openpgp_armor.c).
 * White space at the end of a line is ignored (space, tab, CR, and the
 * no-break space U+00A0 in UTF-8 or Latin-1, which HTML editors put on
 * the armor's empty line).
 * (transfer full) */
#define SG_PGP_MAX_ARMOR_HEADERS 256 /* bytes of armor header lines */
GByteArray *sg_pgp_dearmor_whole(const void *data, size_t len);

/* Reads a packet header at p (old or new format, definite lengths only);
 * returns the offset of the body, its length in *len, or 0 when there is
 * no complete packet. */
size_t sg_pgp_packet_header(const unsigned char *p, size_t avail, int *tag,
			    size_t *len);

/* The packet at p, also with new-format partial body lengths: its tag,
 * where its body starts (*body) and its whole size, header included
 * (*total); false when it is incomplete or malformed. With partial
 * lengths the body at *body is the first chunk, not all of it. */
bool sg_pgp_packet_span(const unsigned char *p, size_t avail, int *tag,
			size_t *body, size_t *total);

#endif
