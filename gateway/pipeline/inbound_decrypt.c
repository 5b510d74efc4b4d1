/* Inbound decryption: a whole-message encryption opened with an envelope
 * recipient's own key, OpenPGP (the packets sealgate's armor reader
 * decodes, so that gpg and sealgate never disagree on what the message
 * is) or S/MIME, into a bounded secret spool (inbound.h). */
#define _GNU_SOURCE
#include <string.h>

#include <gmime/gmime.h>

#include "inbound.h"
#include "pipeline_int.h"
#include "sealgate/mime.h"
#include "sealgate/openpgp.h"
#include "sealgate/smime.h"

/* Each envelope recipient decrypts a message with their own key: at most
 * this many (the rest of the time goes to the MTA's retries). */
#define SG_MAX_DECRYPT_RECIPIENTS 20

static int
plain_write(void *ctx, const void *data, size_t len)
{
	struct plain *p = ctx;
	int rc;

	sg_progress_add(p->progress, len);
	if (p->n + len > p->max) {
		p->overflow = true;
		return SG_ELIMIT;
	}
	p->n += len;
	if (p->spool == NULL)
		return SG_OK;
	rc = sg_spool_write_crlf(p->spool, data, len);
	if (rc < 0)
		p->io_error = true;
	return rc;
}

/* The encrypted part: its content decoded from its transfer encoding as
 * it is read from the spool, and (OpenPGP) the packets sealgate's armor
 * reader decodes from that, so that gpg and sealgate never disagree on
 * what the message is; every reader starts from the beginning. */
struct cipher {
	GMimeObject *carrier;
	GMimeStream *s;
	struct sg_reader raw;           /* over s */
	struct sg_openpgp_reader *packets;
	bool io_error;
};

static int
cipher_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct cipher *c = ctx;
	int rc = c->s != NULL ? sg_mime_stream_read(c->s, buf, len, nread)
	    : SG_EIO;

	if (rc < 0)
		c->io_error = true;
	return rc;
}

static struct sg_reader
packets_reader(struct cipher *c)
{
	struct sg_reader r = { sg_openpgp_reader_read, NULL };

	if (c->s != NULL)
		g_object_unref(c->s);
	sg_openpgp_reader_free(c->packets);
	c->s = sg_mime_part_stream(c->carrier);
	c->raw.read = cipher_read;
	c->raw.ctx = c;
	c->packets = sg_openpgp_reader_new(&c->raw);
	r.ctx = c->packets;
	return r;
}

void
sg_decryption_outcome(struct decryption *d, enum sg_dec_status status,
	    enum sg_dec_reason reason)
{
	d->status = status;
	d->reason = reason;
}

static enum sg_dec_reason
failure_reason(int rc)
{
	switch (rc) {
	case SG_EINTEGRITY:	return SG_DEC_INTEGRITY;
	case SG_ELIMIT:		return SG_DEC_TOO_LARGE;
	case SG_ECIPHER:	return SG_DEC_CIPHER_NOT_ALLOWED;
	case SG_EMALFORMED:	return SG_DEC_MALFORMED;
	default:		return SG_DEC_DECRYPTION_ERROR;
	}
}

/* True when a session key packet names no recipient (a hidden key id). */
static bool
has_hidden_recipient(const GPtrArray *ids)
{
	for (guint i = 0; i < ids->len; i++)
		if (strcmp(g_ptr_array_index(ids, i), "0000000000000000") == 0)
			return true;
	return false;
}

/* named: one of addr's own decryption subkeys is named by the message's
 * session key packets, or one of them hides its recipient (hidden_only:
 * only the latter). */
static int
names_recipient(const struct sg_keystore *ks, const char *addr,
		const GPtrArray *ids, bool *hidden_only, bool *named,
		struct sg_err *err)
{
	GPtrArray *mine = g_ptr_array_new_with_free_func(g_free);
	bool by_id = false;
	int rc;

	rc = sg_openpgp_decryption_subkeys(ks, addr, mine, err);
	for (guint j = 0; rc == 0 && j < mine->len && !by_id; j++)
		for (guint k = 0; k < ids->len && !by_id; k++)
			by_id = g_ascii_strcasecmp(g_ptr_array_index(mine, j),
			    g_ptr_array_index(ids, k)) == 0;
	*named = by_id || has_hidden_recipient(ids);
	*hidden_only = !by_id;
	g_ptr_array_free(mine, TRUE);
	return rc;
}

void
sg_inbound_free_secret(char *s)
{
	if (s != NULL) {
		memset(s, 0, strlen(s));
		g_free(s);
	}
}

/* True when the i-th envelope recipient is an earlier one again (one
 * decryption each is enough; letter case aside, the same mailbox). */
static bool
repeated_rcpt(const struct sg_msg *msg, guint i)
{
	const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

	for (guint j = 0; j < i; j++)
		if (g_ascii_strcasecmp(r->addr, ((struct sg_rcpt *)
		    g_ptr_array_index(msg->rcpts, j))->addr) == 0)
			return true;
	return false;
}

/* The session key with which addr's own secret keys alone open cipher.
 * What that decryption writes is only counted. (transfer full: *key) */
static int
recipient_session_key(const struct sg_keystore *ks, const char *addr,
		      const GPtrArray *ids, struct cipher *cipher,
		      struct decryption *d, char **key, struct sg_err *err)
{
	struct plain count = { NULL, 0, d->plain.max, false, false };
	struct sg_writer sink = { plain_write, &count };
	struct sg_reader in;
	bool named, hidden_only;
	int rc;

	rc = names_recipient(ks, addr, ids, &hidden_only, &named, err);
	if (rc == 0 && !named)
		rc = sg_err_set(err, SG_ENOKEY, "not encrypted to %s", addr);
	if (rc == 0) {
		in = packets_reader(cipher);
		rc = sg_openpgp_session_key_as(ks, addr, &in, &sink, key, err);
	}
	if (count.overflow)
		d->plain.overflow = true;
	/* A hidden recipient that is not this one: not for them. */
	if (rc == SG_ECRYPTO && hidden_only && !d->plain.overflow)
		rc = sg_err_set(err, SG_ENOKEY, "not encrypted to %s", addr);
	return rc;
}

/* The packets read once to their end before anything is decrypted, so
 * that malformed armor is known first; their first SG_PGP_HEAD_MAX bytes
 * to head. */
static int
check_packets(struct cipher *cipher, GByteArray *head, struct sg_err *err)
{
	struct sg_reader in = packets_reader(cipher);
	guint8 buf[65536];
	size_t n;
	int rc;

	while ((rc = in.read(in.ctx, buf, sizeof(buf), &n)) == 0 && n > 0)
		if (head->len < SG_PGP_HEAD_MAX)
			g_byte_array_append(head, buf, (guint)MIN(n,
			    SG_PGP_HEAD_MAX - head->len));
	return rc == SG_EMALFORMED ? sg_err_set(err, rc, "malformed armor") : rc;
}

/* Every envelope recipient opens the message with their own secret keys
 * alone (whatever key ids it carries), and all must reach the same
 * session key; then the message is decrypted with that key, in a context
 * where no secret key is tried, and a signature inside is verified. */
static int
decrypt_openpgp(const struct sg_msg *msg, const struct sg_keystore *ks,
		struct cipher *cipher, struct decryption *d, struct sg_err *err)
{
	struct sg_writer out = { plain_write, &d->plain };
	struct sg_openpgp_decrypted info;
	GPtrArray *ids = g_ptr_array_new_with_free_func(g_free);
	GByteArray *head = g_byte_array_new();
	char *agreed = NULL, *key;
	struct sg_reader in;
	int rc, integrity = SG_PGP_NONE;

	d->method = SG_METHOD_OPENPGP;
	/* gpg reads the packets as sealgate's armor reader decodes them
	 * (the two never disagree on what the message is), checked to
	 * their end first. The session key packets are read from their
	 * start as they are (never decoded again: an armor inside the
	 * armor is no packets). */
	rc = check_packets(cipher, head, err);
	if (rc == 0)
		rc = sg_openpgp_packets_recipients(head->data, head->len, ids,
		    &integrity, err);
	g_byte_array_free(head, TRUE);
	/* Without MDC or AEAD there is nothing to decrypt: gpg would write
	 * unauthenticated plaintext before it noticed. */
	if (rc == 0 && integrity == SG_PGP_NONE)
		rc = sg_err_set(err, SG_EINTEGRITY, "no integrity protection");
	for (guint i = 0; rc == 0 && i < msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		if (repeated_rcpt(msg, i))
			continue;
		key = NULL;
		rc = recipient_session_key(ks, r->addr, ids, cipher, d, &key, err);
		if (rc == 0 && agreed != NULL && strcmp(agreed, key) != 0)
			rc = sg_err_set(err, SG_ENOKEY, "recipients would read "
			    "different messages");
		if (rc == 0 && agreed == NULL) {
			agreed = key;
			key = NULL;
		}
		sg_inbound_free_secret(key);
	}
	if (rc == 0) {
		in = packets_reader(cipher);
		rc = sg_openpgp_decrypt_with(ks, agreed, &in, &out, &info, &d->sig,
		    err);
	}
	if (rc == 0 && info.signed_inside)
		d->sig_method = SG_METHOD_OPENPGP;
	if (rc == 0)
		d->integrity = integrity == SG_PGP_AEAD ? SG_INTEGRITY_AEAD
		    : SG_INTEGRITY_MDC;
	sg_inbound_free_secret(agreed);
	g_ptr_array_free(ids, TRUE);
	return rc;
}

/* S/MIME: the DER goes to a spool of its own (decoded from the base64 of
 * the message), from where OpenSSL reads the encrypted content. */
static int
decrypt_smime(const struct sg_msg *msg, const struct sg_policy *pol,
	      const struct sg_keystore *ks, struct cipher *cipher,
	      struct decryption *d, struct sg_err *err)
{
	struct sg_writer out = { plain_write, &d->plain };
	struct sg_smime_decrypted info;
	struct sg_spool *der = NULL;
	struct sg_source src;
	const char **rcpts = g_new0(const char *, msg->rcpts->len + 1);
	GMimeStream *s = sg_mime_part_stream(cipher->carrier);
	size_t n = 0;
	int rc;

	d->method = SG_METHOD_SMIME;
	for (guint i = 0; i < msg->rcpts->len; i++)
		if (!repeated_rcpt(msg, i))
			rcpts[n++] = ((struct sg_rcpt *)
			    g_ptr_array_index(msg->rcpts, i))->addr;
	rc = sg_spool_new(pol->gateway.spool_dir, SG_SPOOL_MEM_LIMIT, &der);
	if (rc == 0)
		rc = s != NULL ? sg_spool_write_stream(der, s) : SG_EIO;
	if (rc < 0)
		rc = sg_err_set(err, rc, "cannot spool the S/MIME object");
	if (rc == 0) {
		sg_spool_source(der, &src);
		rc = sg_smime_decrypt(ks, &src, rcpts, n, pol->inbound.allow_3des,
		    &out, &info, err);
	}
	if (rc == 0)
		d->integrity = info.aead ? SG_INTEGRITY_AEAD : SG_INTEGRITY_NONE;
	if (s != NULL)
		g_object_unref(s);
	sg_spool_free(der);
	g_free(rcpts);
	return rc;
}

/* A failure of the gateway's own means (keystore, memory, spool,
 * temporary files), not of the message: the message waits in the MTA's
 * queue rather than reach its recipient undecrypted. */
static bool
transient(int rc)
{
	return rc == SG_EKEYSTORE || rc == SG_EIO || rc == SG_ENOMEM;
}

int
sg_inbound_decrypt(const struct sg_msg *msg, const struct sg_policy *pol,
		   const struct sg_keystore *ks, GMimeObject *top,
		   enum sg_protection prot, struct decryption *d,
		   struct sg_err *err)
{
	struct cipher cipher = { top, NULL, { NULL, NULL }, NULL, false };
	int rc;

	if (prot == SG_PROT_PGP_MIME) {
		GMimeMultipart *mp = GMIME_MULTIPART(top);

		cipher.carrier = g_mime_multipart_get_count(mp) == 2
		    ? g_mime_multipart_get_part(mp, 1) : NULL;
	}
	if (!GMIME_IS_PART(cipher.carrier) || prot == SG_PROT_ENCRYPTED) {
		sg_decryption_outcome(d, SG_DEC_NO, prot == SG_PROT_ENCRYPTED
		    ? SG_DEC_UNSUPPORTED : SG_DEC_MALFORMED);
		return SG_OK;
	}
	d->inline_text = prot == SG_PROT_PGP_INLINE;
	if (msg->rcpts->len > SG_MAX_DECRYPT_RECIPIENTS) {
		sg_decryption_outcome(d, SG_DEC_NO, SG_DEC_TOO_MANY_RECIPIENTS);
		return SG_OK;
	}
	for (guint i = 0; i < msg->rcpts->len; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);

		/* A leaver's keys are kept for audit, never used. */
		if (sg_keystore_deactivated(ks, r->addr)) {
			sg_decryption_outcome(d, SG_DEC_NO, SG_DEC_DEACTIVATED);
			return SG_OK;
		}
	}
	/* Where the plaintext will be, before anything is decrypted. */
	rc = sg_spool_new_secret(pol->gateway.spool_dir, &d->plain.spool);
	if (rc < 0)
		return sg_err_set(err, rc, "cannot create a spool file for the "
		    "plaintext in %s", pol->gateway.spool_dir);
	rc = prot == SG_PROT_SMIME ? decrypt_smime(msg, pol, ks, &cipher, d, err)
	    : decrypt_openpgp(msg, ks, &cipher, d, err);
	if (cipher.s != NULL)
		g_object_unref(cipher.s);
	sg_openpgp_reader_free(cipher.packets);
	if (transient(rc) || cipher.io_error || d->plain.io_error)
		return transient(rc) ? rc : sg_err_set(err, SG_EIO,
		    "cannot read or write the spool");
	if (rc == 0)
		sg_decryption_outcome(d, SG_DEC_YES, SG_DEC_NO_REASON);
	else if (rc == SG_ENOKEY)
		sg_decryption_outcome(d, SG_DEC_NO, SG_DEC_NOT_FOR_RECIPIENT);
	else
		sg_decryption_outcome(d, SG_DEC_FAILED,
		    failure_reason(d->plain.overflow ? SG_ELIMIT : rc));
	return SG_OK;
}
