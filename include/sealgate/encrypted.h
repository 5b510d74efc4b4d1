/* Whether bytes are really encrypted: decided from the content (OpenPGP
 * packets, CMS structure), never from a label (DESIGN.md §4 rule 7). */
#ifndef SEALGATE_ENCRYPTED_H
#define SEALGATE_ENCRYPTED_H

#include <stdbool.h>
#include <stddef.h>

/* Session key packets accepted in front of the encrypted data. */
#define SG_PGP_MAX_SESSION_KEYS 1000

/* True when data (binary packets) is one or more public-key or symmetric
 * session key packets (tags 1 and 3) followed by exactly one
 * integrity-protected encrypted data packet (tag 18 SEIPD or tag 20 AEAD)
 * that ends the data: no literal, compressed, signature, one-pass, marker
 * or unprotected (tag 9) packets, nothing after it. */
bool sg_openpgp_packets_encrypted(const void *data, size_t len);

/* The same for text that is exactly one armored "PGP MESSAGE" block
 * (white space around it allowed); armored true. With armored false, data
 * may also be binary packets. */
bool sg_openpgp_is_encrypted(const void *data, size_t len, bool armored);

/* True when der is exactly one CMS ContentInfo (DER or BER) whose
 * contentType is EnvelopedData or AuthEnvelopedData, that parses as
 * such and has at least one RecipientInfo. */
bool sg_smime_is_enveloped(const void *der, size_t len);

#endif
