/* Fuzz target: arbitrary bytes as the DER of a CMS object, read the ways
 * inbound mail's are: the "already encrypted" check
 * (sg_smime_is_enveloped), decryption for alice@example.com
 * (sg_smime_decrypt: the object split from its content, sealgate's own
 * DER pre-checks of the content type, cipher and GCM/CBC parameters, then
 * OpenSSL with alice's key) and signature verification, opaque
 * (sg_smime_verify_opaque) and detached (sg_smime_verify). Checks
 * that what decrypts names an allowed cipher, with integrity exactly for
 * AES-GCM. */
#include <string.h>

#include "sealgate/encrypted.h"
#include "sealgate/smime.h"
#include "sealgate/verify.h"
#include "fuzz_env.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_env();
	return 0;
}

/* The input as a struct sg_source, as a spool would give it. */
struct bytes {
	const uint8_t *data;
	size_t size;
};

static int
bytes_read_at(void *ctx, off_t off, void *buf, size_t len, size_t *nread)
{
	const struct bytes *b = ctx;

	*nread = 0;
	if (off < 0 || (size_t)off >= b->size)
		return SG_OK;
	*nread = MIN(len, b->size - (size_t)off);
	memcpy(buf, b->data + off, *nread);
	return SG_OK;
}

static int
bytes_read(void *ctx, void *buf, size_t len, size_t *nread)
{
	struct bytes *b = ctx;

	*nread = MIN(len, b->size);
	if (*nread > 0)
		memcpy(buf, b->data, *nread);
	b->data += *nread;
	b->size -= *nread;
	return SG_OK;
}

static int
discard(void *ctx, const void *buf, size_t len)
{
	(void)buf;
	*(size_t *)ctx += len;
	return SG_OK;
}

static void
decrypt(const uint8_t *data, size_t size, bool allow_3des)
{
	static const char *const rcpts[] = { "alice@example.com" };
	const struct fuzz_env *e = fuzz_env();
	struct sg_smime_decrypted info;
	struct sg_err err = { 0 };
	size_t n = 0;
	struct sg_writer out = { discard, &n };
	struct bytes b = { data, size };
	struct sg_source der = { bytes_read_at, &b, (off_t)size };

	if (sg_smime_decrypt(e->ks, &der, rcpts, 1, allow_3des, &out, &info,
	    &err) < 0)
		return;
	/* Integrity (AEAD) exactly for AES-GCM. */
	if (info.cipher == NULL ||
	    info.aead != (strstr(info.cipher, "GCM") != NULL))
		fuzz_fail("decrypted with cipher %s, aead %d",
		    info.cipher ? info.cipher : "none", info.aead);
	if (!allow_3des && strstr(info.cipher, "EDE3") != NULL)
		fuzz_fail("3DES decrypted without allow_3des");
}

static void
verify(const uint8_t *data, size_t size, const char *content)
{
	const struct fuzz_env *e = fuzz_env();
	struct sg_err err = { 0 };
	struct sg_sig sig;
	size_t n = 0;
	struct sg_writer out = { discard, &n };
	struct bytes b = { data, size };
	struct sg_source der = { bytes_read_at, &b, (off_t)size };
	struct bytes text = { (const uint8_t *)content,
	    content ? strlen(content) : 0 };
	struct sg_reader signed_text = { bytes_read, &text };

	sg_sig_init(&sig);
	if (content != NULL)
		sg_smime_verify(e->ks, data, size, &signed_text, &sig, &err);
	else
		sg_smime_verify_opaque(e->ks, &der, &out, &sig, &err);
	sg_sig_clear(&sig);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)sg_smime_is_enveloped(data, size);
	decrypt(data, size, false);
	decrypt(data, size, true);
	verify(data, size, NULL);
	verify(data, size, "Content-Type: text/plain\r\n\r\nhello\r\n");
	return 0;
}
