/* The libraries the pipeline runs on, initialised once per process. */
#include <stdlib.h>

#include <gmime/gmime.h>
#include <openssl/crypto.h>
#include <openssl/provider.h>

#include "sealgate/openpgp.h"
#include "sealgate/pipeline.h"

static OSSL_PROVIDER *provider_default, *provider_legacy;

static void
unload_providers(void)
{
	if (provider_legacy != NULL)
		OSSL_PROVIDER_unload(provider_legacy);
	if (provider_default != NULL)
		OSSL_PROVIDER_unload(provider_default);
}

int
sg_pipeline_init(struct sg_err *err)
{
	g_mime_init();
	if (OPENSSL_init_crypto(0, NULL) != 1 ||
	    (provider_default = OSSL_PROVIDER_load(NULL, "default")) == NULL)
		return sg_err_set(err, SG_ECRYPTO,
		    "OpenSSL initialisation failed");
	/* PKCS#12 files from older tools use RC2 or RC4: reading them needs
	 * the legacy provider. Inbound decryption has its own allow-list. */
	provider_legacy = OSSL_PROVIDER_load(NULL, "legacy");
	atexit(unload_providers);
	return sg_openpgp_init(err);
}
