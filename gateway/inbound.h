/* Inbound processing (gateway/inbound.c). */
#ifndef SEALGATE_INBOUND_H
#define SEALGATE_INBOUND_H

#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/pipeline.h"
#include "sealgate/policy.h"

/* For a transaction whose recipients are all internal: removes forged
 * status headers, decrypts when the policy and the keys allow, and adds
 * X-Sealgate-Decrypted and X-Sealgate-Signature. */
int sg_inbound_run(struct sg_msg *msg, const struct sg_policy *pol,
		   const struct sg_keystore *ks, struct sg_result *res);

#endif
