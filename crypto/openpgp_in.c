/* Inbound OpenPGP: which keys a message is encrypted to, and decryption
 * that only ever reports success for an integrity-protected message. */
#include <string.h>

#include <glib.h>

#include "keyindex.h"
#include "openpgp_int.h"
#include "openpgp_packet.h"
#include "sealgate/verify.h"

/* The tag of the packet at p (old or new format), or -1. */
static int
packet_tag(const guint8 *p, size_t avail)
{
	if (avail < 1 || !(p[0] & 0x80))
		return -1;
	return (p[0] & 0x40) ? (p[0] & 0x3f) : ((p[0] >> 2) & 0x0f);
}

int
sg_openpgp_recipients(const void *data, size_t len, GPtrArray *keyids,
		      int *integrity, struct sg_err *err)
{
	GByteArray *bin = sg_openpgp_binary(data, len);
	int rc;

	*integrity = SG_PGP_NONE;
	if (bin == NULL)
		return sg_err_set(err, SG_EMALFORMED, "malformed armor");
	rc = sg_openpgp_packets_recipients(bin->data, bin->len, keyids,
	    integrity, err);
	g_byte_array_free(bin, TRUE);
	return rc;
}

int
sg_openpgp_packets_recipients(const void *packets, size_t len,
			      GPtrArray *keyids, int *integrity,
			      struct sg_err *err)
{
	const guint8 *data = packets;
	size_t off = 0, blen, h;
	int tag, found = 0, skesk = 0;

	*integrity = SG_PGP_NONE;
	/* An empty array's data is NULL: no pointer arithmetic on it. */
	while (off < len && (h = sg_pgp_packet_header(data + off, len - off,
	    &tag, &blen)) != 0) {
		const guint8 *body = data + off + h;

		if (tag == 1 && blen >= 9 && body[0] == 3) {
			g_ptr_array_add(keyids, g_strdup_printf(
			    "%02X%02X%02X%02X%02X%02X%02X%02X", body[1], body[2],
			    body[3], body[4], body[5], body[6], body[7], body[8]));
			found++;
		} else if (tag == 3) {
			skesk++;        /* a passphrase's: never tried here */
		} else if (tag != 1 && tag != 10) {
			break;          /* past the session key packets */
		}
		off += h + blen;
		if (found + skesk > SG_MAX_PKESK)
			break;
	}
	/* The encrypted data packet that follows: 18 (SEIPD, with MDC) and
	 * 20 (AEAD) protect integrity, 9 (SED) does not. */
	switch (off < len ? packet_tag(data + off, len - off) : -1) {
	case 18:	*integrity = SG_PGP_MDC; break;
	case 20:	*integrity = SG_PGP_AEAD; break;
	default:	*integrity = SG_PGP_NONE; break;
	}
	if (found == 0)
		return sg_err_set(err, SG_EMALFORMED,
		    "no public-key encrypted session key");
	if (found + skesk > SG_MAX_PKESK)
		return sg_err_set(err, SG_ELIMIT, "too many recipients");
	return SG_OK;
}

/*
 * The keys that decrypt for addr: keys with a user id for addr that is
 * neither revoked itself nor invalid (the keystore lists user ids so, see
 * keystore.c), not disabled or invalid, with the secret part of an
 * encryption-capable (sub)key. Expired and revoked keys and subkeys
 * count: `keys import` lets them in only with their secret part and for an
 * internal address, and never to encrypt or sign, so that mail sent to
 * them before still opens. Their fingerprints go to fprs (unless NULL),
 * the key ids of those (sub)keys to keyids (unless NULL).
 */
static int
decryption_keys(const struct sg_keystore *ks, const char *addr,
		GPtrArray *fprs, GPtrArray *keyids, struct sg_err *err)
{
	gpgme_ctx_t ctx;
	gpgme_key_t key;
	gpgme_error_t gerr;
	char *pattern;
	int rc;

	if (!sg_pgp_addr_ok(addr))
		return SG_OK;
	rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0)
		return rc;
	pattern = g_strdup_printf("<%s>", addr);
	gerr = gpgme_op_keylist_start(ctx, pattern, 1);
	while (!gerr && !(gerr = gpgme_op_keylist_next(ctx, &key))) {
		bool any = false;

		if (!key->disabled && !key->invalid && key->fpr != NULL &&
		    sg_pgp_uid_matches(key, addr)) {
			for (gpgme_subkey_t sk = key->subkeys; sk; sk = sk->next) {
				if (!sk->can_encrypt || !sk->secret ||
				    sk->disabled || sk->invalid || !sk->keyid)
					continue;
				any = true;
				if (keyids != NULL)
					g_ptr_array_add(keyids, g_strdup(sk->keyid));
			}
		}
		if (any && fprs != NULL)
			g_ptr_array_add(fprs, g_strdup(key->fpr));
		gpgme_key_unref(key);
	}
	g_free(pattern);
	if (gpg_err_code(gerr) != GPG_ERR_EOF)
		rc = sg_pgp_fail(err, "key listing failed", gerr);
	gpgme_op_keylist_end(ctx);
	gpgme_release(ctx);
	return rc;
}

int
sg_openpgp_decryption_subkeys(const struct sg_keystore *ks, const char *addr,
			      GPtrArray *keyids, struct sg_err *err)
{
	guint before = keyids->len;
	int rc = decryption_keys(ks, addr, NULL, keyids, err);

	/* An unreadable keyring only ends gpg's listing early (see
	 * sg_pgp_each_key): none listed where the snapshot knows one means
	 * the keystore cannot be read now, not that the key is gone. */
	if (rc == 0 && keyids->len == before && ks->index != NULL &&
	    sg_keyindex_pgp_decrypts(ks->index, addr))
		rc = sg_err_set(err, SG_EKEYSTORE, "gpg lists no secret key of "
		    "%s in %s, the keystore snapshot holds one: the keystore "
		    "cannot be read", addr, ks->gnupg_home);
	return rc;
}

/* Classifies a decryption failure for the status header. */
static int
decrypt_failure(gpgme_error_t gerr, gpgme_decrypt_result_t res,
		struct sg_err *err)
{
	char buf[128];

	if (res != NULL && res->legacy_cipher_nomdc)
		return sg_err_set(err, SG_EINTEGRITY, "no integrity protection");
	switch (gpg_err_code(gerr)) {
	case GPG_ERR_BAD_DATA:
	case GPG_ERR_BAD_SIGNATURE:
	case GPG_ERR_CHECKSUM:
		return sg_err_set(err, SG_EINTEGRITY, "integrity check failed");
	case GPG_ERR_NO_SECKEY:
		return sg_err_set(err, SG_ENOKEY, "no secret key");
	case GPG_ERR_USER_1:
		return sg_err_set(err, SG_ELIMIT, "decrypted data too large");
	default:
		gpgme_strerror_r(gerr, buf, sizeof(buf));
		return sg_err_set(err, SG_ECRYPTO, "decryption failed: %s", buf);
	}
}

/* Decryption in ctx (see sg_openpgp_session_key_as); the session key
 * that opened the message goes to session_key when it is not NULL (the
 * context must have been asked to export it). */
static int
decrypt_in(gpgme_ctx_t ctx, struct sg_reader *in, struct sg_writer *out,
	   struct sg_openpgp_decrypted *info, struct sg_sig *sig,
	   char **session_key, struct sg_err *err)
{
	struct gpgme_data_cbs in_cbs = { .read = sg_pgp_cb_read };
	struct gpgme_data_cbs out_cbs = { .write = sg_pgp_cb_write };
	gpgme_data_t cipher = NULL, plain = NULL;
	gpgme_decrypt_result_t res;
	gpgme_verify_result_t vres;
	gpgme_error_t gerr;
	int rc = SG_OK;

	memset(info, 0, sizeof(*info));
	gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_LOOPBACK);
	if (gpgme_data_new_from_cbs(&cipher, &in_cbs, in) ||
	    gpgme_data_new_from_cbs(&plain, &out_cbs, out)) {
		rc = sg_err_set(err, SG_ENOMEM, "gpgme data setup failed");
		goto out;
	}
	gerr = gpgme_op_decrypt_verify(ctx, cipher, plain);
	res = gpgme_op_decrypt_result(ctx);
	/* gpg writes plaintext before it reports a missing or bad MDC:
	 * anything but full success is a failure, whatever was written. */
	if (gerr || res == NULL || res->legacy_cipher_nomdc ||
	    res->unsupported_algorithm != NULL) {
		rc = decrypt_failure(gerr, res, err);
		goto out;
	}
	if (session_key != NULL) {
		if (res->session_key == NULL || *res->session_key == '\0') {
			rc = sg_err_set(err, SG_ECRYPTO, "no session key reported");
			goto out;
		}
		*session_key = g_strdup(res->session_key);
	}
	info->is_mime = res->is_mime;
	vres = gpgme_op_verify_result(ctx);
	info->signed_inside = vres != NULL && vres->signatures != NULL;
	if (info->signed_inside && sig != NULL)
		sg_openpgp_sig_result(ctx, vres->signatures, sig);
out:
	gpgme_data_release(cipher);
	gpgme_data_release(plain);
	return rc;
}

int
sg_openpgp_decrypt_with(const struct sg_keystore *ks,
			const char *session_key, struct sg_reader *in,
			struct sg_writer *out,
			struct sg_openpgp_decrypted *info, struct sg_sig *sig,
			struct sg_err *err)
{
	gpgme_ctx_t ctx;
	int rc;

	rc = sg_pgp_ctx(ks, &ctx, err);
	if (rc < 0)
		return rc;
	/* With a session key given, gpg skips every session key packet, so
	 * no secret key of the keystore is tried. GPGME hands it over on a
	 * file descriptor, not on the command line. */
	if (gpgme_set_ctx_flag(ctx, "override-session-key", session_key))
		rc = sg_err_set(err, SG_ECRYPTO, "cannot pass the session key");
	else
		rc = decrypt_in(ctx, in, out, info, sig, NULL, err);
	gpgme_release(ctx);
	return rc;
}

/* A context on a new home holding the keys that decrypt for addr
 * (decryption_keys), named by fingerprint: a key found by a revoked user
 * id never gets there. */
static int
home_with_keys_of(const struct sg_keystore *ks, const char *addr,
		  const char *home, gpgme_ctx_t *out, struct sg_err *err)
{
	GPtrArray *fprs = g_ptr_array_new_with_free_func(g_free);
	gpgme_ctx_t src = NULL, dst = NULL;
	gpgme_data_t keys = NULL;
	gpgme_import_result_t ir;
	char *conf = g_build_filename(home, "gpg.conf", NULL);
	int rc;

	g_file_set_contents(conf, "no-auto-key-retrieve\ndisable-dirmngr\n"
	    "trust-model always\n", -1, NULL);
	rc = decryption_keys(ks, addr, fprs, NULL, err);
	if (rc == 0 && fprs->len == 0)
		rc = sg_err_set(err, SG_ENOKEY, "no secret key of %s", addr);
	if (rc == 0)
		rc = sg_pgp_ctx(ks, &src, err);
	if (rc < 0)
		goto out;
	gpgme_set_pinentry_mode(src, GPGME_PINENTRY_MODE_LOOPBACK);
	g_ptr_array_add(fprs, NULL);
	if (gpgme_new(&dst) || gpgme_set_protocol(dst, GPGME_PROTOCOL_OpenPGP) ||
	    gpgme_ctx_set_engine_info(dst, GPGME_PROTOCOL_OpenPGP, NULL, home) ||
	    gpgme_data_new(&keys)) {
		rc = sg_err_set(err, SG_ECRYPTO, "cannot set up a GnuPG home");
		goto out;
	}
	gpgme_set_offline(dst, 1);
	gpgme_set_pinentry_mode(dst, GPGME_PINENTRY_MODE_LOOPBACK);
	if (gpgme_op_export_ext(src, (const char **)fprs->pdata,
	    GPGME_EXPORT_MODE_SECRET, keys) ||
	    gpgme_data_seek(keys, 0, SEEK_SET) != 0 ||
	    gpgme_op_import(dst, keys) ||
	    (ir = gpgme_op_import_result(dst)) == NULL ||
	    ir->secret_imported + ir->secret_unchanged == 0) {
		rc = sg_err_set(err, SG_ENOKEY, "no secret key of %s", addr);
		goto out;
	}
	*out = dst;
	dst = NULL;
out:
	gpgme_data_release(keys);
	if (src != NULL)
		gpgme_release(src);
	if (dst != NULL)
		gpgme_release(dst);
	g_ptr_array_free(fprs, TRUE);
	g_free(conf);
	return rc;
}

int
sg_openpgp_session_key_as(const struct sg_keystore *ks, const char *addr,
			  struct sg_reader *in, struct sg_writer *out,
			  char **session_key, struct sg_err *err)
{
	struct sg_openpgp_decrypted info;
	gpgme_ctx_t ctx = NULL;
	char *home;
	int rc;

	if (!sg_pgp_addr_ok(addr))
		return sg_err_set(err, SG_ENOKEY, "not a usable address");
	rc = sg_pgp_check_own_material(ks, addr, err);
	if (rc < 0)
		return rc;
	home = sg_pgp_make_home(SG_PGP_HOME_DECRYPT, err);
	if (home == NULL)
		return SG_EIO;
	rc = home_with_keys_of(ks, addr, home, &ctx, err);
	if (rc == 0 && gpgme_set_ctx_flag(ctx, "export-session-key", "1"))
		rc = sg_err_set(err, SG_ECRYPTO, "cannot ask for the session key");
	if (rc == 0)
		rc = decrypt_in(ctx, in, out, &info, NULL, session_key, err);
	if (ctx != NULL)
		gpgme_release(ctx);
	sg_pgp_remove_home(home);
	g_free(home);
	return rc;
}
