/* Fuzz target: arbitrary bytes read as OpenPGP the ways sealgate reads
 * them, without GnuPG: armor (sg_openpgp_binary, sg_pgp_dearmor_whole),
 * packet headers and spans, the session key packets of inbound mail
 * (sg_openpgp_recipients) and the "already encrypted" check
 * (sg_openpgp_is_encrypted). Checks that every packet the readers report
 * lies within the data. */
#include "openpgp_packet.h"
#include "sealgate/encrypted.h"
#include "sealgate/openpgp.h"
#include "fuzz_env.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_init_libraries();
	return 0;
}

/* Walks the packets of bin as sg_openpgp_packets_encrypted and
 * sg_openpgp_recipients do. */
static void
walk(const guint8 *p, size_t len)
{
	size_t off = 0, body, total, h, blen;
	int tag;

	if (len == 0)
		return;         /* p may be NULL */
	while (off < len && sg_pgp_packet_span(p + off, len - off, &tag, &body,
	    &total)) {
		if (body > total || total > len - off || total == 0)
			fuzz_fail("packet span %zu+%zu at %zu of %zu", body,
			    total, off, len);
		off += total;
	}
	for (off = 0; (h = sg_pgp_packet_header(p + off, len - off, &tag,
	    &blen)) != 0; off += h + blen)
		if (h + blen > len - off)
			fuzz_fail("packet header %zu+%zu at %zu of %zu", h, blen,
			    off, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	GPtrArray *ids = g_ptr_array_new_with_free_func(g_free);
	struct sg_err err = { 0 };
	GByteArray *bin;
	int integrity = -1, rc;

	bin = sg_openpgp_binary(data, size);
	if (bin != NULL) {
		walk(bin->data, bin->len);
		g_byte_array_free(bin, TRUE);
	}
	bin = sg_pgp_dearmor_whole(data, size);
	if (bin != NULL) {
		if (bin->len == 0)
			fuzz_fail("an armored block of nothing");
		walk(bin->data, bin->len);
		(void)sg_openpgp_packets_encrypted(bin->data, bin->len);
		g_byte_array_free(bin, TRUE);
	}
	walk(data, size);
	(void)sg_openpgp_is_encrypted(data, size, true);
	(void)sg_openpgp_is_encrypted(data, size, false);
	rc = sg_openpgp_recipients(data, size, ids, &integrity, &err);
	if (rc == 0 && ids->len == 0)
		fuzz_fail("recipients found, but none named");
	if (integrity != SG_PGP_NONE && integrity != SG_PGP_MDC &&
	    integrity != SG_PGP_AEAD)
		fuzz_fail("integrity %d", integrity);
	g_ptr_array_free(ids, TRUE);
	return 0;
}
