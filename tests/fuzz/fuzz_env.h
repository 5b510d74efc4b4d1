/* What the fuzz targets run in (tests/fuzz/README.md). */
#ifndef SEALGATE_FUZZ_ENV_H
#define SEALGATE_FUZZ_ENV_H

#include <stddef.h>
#include <stdint.h>

#include "sealgate/input.h"
#include "sealgate/keystore.h"
#include "sealgate/pipeline.h"
#include "sealgate/policy.h"

/* The harness's entry points (libFuzzer's, also called by replay.c). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A temporary directory, removed at exit, holding a keystore snapshot and
 * the policy tests/fuzz/policy.yaml on it. The keystore has the example
 * identities (keys-example/) an inbound and an outbound message need:
 * alice@example.com, internal, with her OpenPGP secret key and her S/MIME
 * certificate and key; carol@partner.example's OpenPGP public key;
 * frank@smime.example's certificate; the example CA as trust anchor.
 * Sets up the libraries first (sg_pipeline_init). Aborts when anything
 * fails: a target that cannot reach its code must not look like a pass.
 */
struct fuzz_env {
	char *dir;
	struct sg_policy *pol;
	struct sg_keystore *ks;
};

const struct fuzz_env *fuzz_env(void);

/* sg_pipeline_init, once, for targets that need no keystore; aborts on
 * failure. */
void fuzz_init_libraries(void);

/* Runs data as one message with env's envelope through the pipeline, as
 * `sealgate process` would, and writes the result (the edits applied) to
 * /dev/null; res receives the pipeline's result (sg_result_clear it). */
void fuzz_run_message(const uint8_t *data, size_t size,
		      const struct sg_envelope *env, struct sg_result *res);

/* fn runs once at exit, also after fuzz_fail (and a GLib critical), so
 * that temporary files and gpg-agents do not outlive a failing input.
 * fuzz_cleanup runs them now. After a sanitizer's report replay.c's
 * parent process removes what is left; libFuzzer leaves it. */
void fuzz_on_exit(void (*fn)(void));
void fuzz_cleanup(void);

/* Aborts with a message: a broken property of sealgate's output. */
void fuzz_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
