/* Fuzz target: arbitrary bytes as an inbound message from
 * carol@partner.example to alice@example.com through the whole pipeline
 * (MIME inspection, OpenPGP and S/MIME decryption with alice's keys,
 * signature verification, the rewrite), and the result written as
 * `sealgate process` writes it. Checks that plaintext comes out only with
 * integrity (README, "Security guarantees" 3). */
#include <string.h>

#include "fuzz_env.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_env();
	return 0;
}

/* The value of the X-Sealgate-Decrypted field the edits add, or NULL. */
static const char *
decrypted_status(const struct sg_edits *ed)
{
	for (guint i = 0; i < ed->hdr->len; i++) {
		const struct sg_hdr_edit *e = g_ptr_array_index(ed->hdr, i);

		if (e->op == SG_HDR_ADD &&
		    strcmp(e->name, "X-Sealgate-Decrypted") == 0)
			return e->value;
	}
	return NULL;
}

static void
check(const struct sg_result *res)
{
	const char *status = decrypted_status(&res->edits);

	if (res->verdict != SG_VERDICT_ACCEPT)
		return;
	if (status == NULL)
		fuzz_fail("accepted without X-Sealgate-Decrypted");
	if (strncmp(status, "yes;", 4) == 0 &&
	    strstr(status, "; integrity=mdc") == NULL &&
	    strstr(status, "; integrity=aead") == NULL &&
	    strstr(status, "; integrity=signature") == NULL)
		fuzz_fail("decrypted without integrity: %s", status);
	/* A new body is plaintext: only from a decryption that held, or
	 * the content of opaque signed-data. */
	if (res->edits.body != NULL && strncmp(status, "yes;", 4) != 0 &&
	    strcmp(res->action, "unwrap") != 0)
		fuzz_fail("new body with X-Sealgate-Decrypted: %s, action %s",
		    status, res->action);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static GPtrArray *to;
	struct sg_envelope envelope = { 0 };
	struct sg_result res;

	if (to == NULL) {
		to = g_ptr_array_new();
		g_ptr_array_add(to, "alice@example.com");
	}
	envelope.from = "carol@partner.example";
	envelope.to = to;
	envelope.client_ip = "192.0.2.7";
	fuzz_run_message(data, size, &envelope, &res);
	check(&res);
	sg_result_clear(&res);
	return 0;
}
