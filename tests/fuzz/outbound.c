/* Fuzz target: arbitrary bytes as an outbound message from
 * alice@example.com (SMTP AUTH login alice) to frank@smime.example
 * through the whole pipeline: the rules of tests/fuzz/policy.yaml
 * (Subject tag, Sensitivity, MIP labels, size), the "already encrypted"
 * check, S/MIME signing as alice and encryption to frank, in process; the
 * result written as `sealgate process` writes it. Every message must
 * leave protected (README, "Security guarantees" 1). */
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static GPtrArray *to;
	struct sg_envelope envelope = { 0 };
	struct sg_result res;

	if (to == NULL) {
		to = g_ptr_array_new();
		g_ptr_array_add(to, "frank@smime.example");
	}
	envelope.from = "alice@example.com";
	envelope.to = to;
	envelope.client_ip = "192.0.2.7";
	envelope.auth = "alice";
	fuzz_run_message(data, size, &envelope, &res);
	/* Every rule protects: what is accepted is signed or encrypted by
	 * sealgate (a new body), or was encrypted already. */
	if (res.verdict == SG_VERDICT_ACCEPT && res.edits.body == NULL &&
	    (res.reason == NULL ||
	    strncmp(res.reason, "already protected", 17) != 0))
		fuzz_fail("accepted unprotected: %s",
		    res.reason ? res.reason : "no reason");
	sg_result_clear(&res);
	return 0;
}
