/* Iteration counts of PKCS#12 and PKCS#8 key derivation, read from the
 * ASN.1 before OpenSSL derives anything; see smime_pbe.h. */
#include <stdint.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "smime_pbe.h"

#define MAX_SAFE_DEPTH 8        /* safeContents bags inside bags */

static int
count(uint64_t n, uint64_t *total, struct sg_err *err)
{
	*total += n;
	if (n > SG_PBE_MAX_ITER)
		return sg_err_set(err, SG_ELIMIT, "key derivation with %llu "
		    "iterations (more than %d): refused", (unsigned long long)n,
		    SG_PBE_MAX_ITER);
	if (*total > SG_PBE_MAX_TOTAL)
		return sg_err_set(err, SG_ELIMIT, "key derivations with more than "
		    "%d iterations in all: refused", SG_PBE_MAX_TOTAL);
	return SG_OK;
}

static int
integer(const ASN1_INTEGER *a, uint64_t *out, struct sg_err *err)
{
	if (a == NULL || ASN1_INTEGER_get_uint64(out, a) != 1)
		return sg_err_set(err, SG_ELIMIT, "key derivation with an "
		    "unreadable or out-of-range iteration count: refused");
	return SG_OK;
}

/* PBES2: PBKDF2 iterations, or scrypt's N * r * p. */
static int
pbes2(const ASN1_TYPE *param, uint64_t *total, struct sg_err *err)
{
	PBE2PARAM *p2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), param);
	uint64_t n = 0, r = 0, par = 0;
	int rc = SG_OK, kdf;

	if (p2 == NULL)
		return sg_err_set(err, SG_EINVAL, "unreadable PBES2 parameters");
	kdf = OBJ_obj2nid(p2->keyfunc->algorithm);
	if (kdf == NID_id_pbkdf2) {
		PBKDF2PARAM *k = ASN1_TYPE_unpack_sequence(
		    ASN1_ITEM_rptr(PBKDF2PARAM), p2->keyfunc->parameter);

		rc = k == NULL ? sg_err_set(err, SG_EINVAL, "unreadable PBKDF2 "
		    "parameters") : integer(k->iter, &n, err);
		if (rc == 0)
			rc = count(n, total, err);
		PBKDF2PARAM_free(k);
	} else if (kdf == NID_id_scrypt) {
		SCRYPT_PARAMS *s = ASN1_TYPE_unpack_sequence(
		    ASN1_ITEM_rptr(SCRYPT_PARAMS), p2->keyfunc->parameter);

		rc = s == NULL ? sg_err_set(err, SG_EINVAL, "unreadable scrypt "
		    "parameters") : integer(s->costParameter, &n, err);
		if (rc == 0)
			rc = integer(s->blockSize, &r, err);
		if (rc == 0)
			rc = integer(s->parallelizationParameter, &par, err);
		if (rc == 0 && (n == 0 || r == 0 || par == 0 ||
		    n > SG_PBE_MAX_SCRYPT / r ||
		    n * r > SG_PBE_MAX_SCRYPT / par))
			rc = sg_err_set(err, SG_ELIMIT, "scrypt key derivation "
			    "beyond N*r*p = %ld: refused", SG_PBE_MAX_SCRYPT);
		SCRYPT_PARAMS_free(s);
	} else {
		rc = sg_err_set(err, SG_EINVAL, "unsupported key derivation %s",
		    OBJ_nid2sn(kdf));
	}
	PBE2PARAM_free(p2);
	return rc;
}

/* The iteration count of one password-based algorithm: PBES2, else a
 * PKCS#5 v1 / PKCS#12 PBE with PBEParameter (salt, iterations). */
static int
check_alg(const X509_ALGOR *alg, uint64_t *total, struct sg_err *err)
{
	const ASN1_OBJECT *obj;
	const void *pval;
	PBEPARAM *pbe;
	uint64_t n = 0;
	int ptype, rc;

	X509_ALGOR_get0(&obj, &ptype, &pval, alg);
	if (OBJ_obj2nid(obj) == NID_pbes2)
		return pbes2(ptype == V_ASN1_SEQUENCE ? alg->parameter : NULL,
		    total, err);
	pbe = ptype == V_ASN1_SEQUENCE ? ASN1_TYPE_unpack_sequence(
	    ASN1_ITEM_rptr(PBEPARAM), alg->parameter) : NULL;
	if (pbe == NULL)
		return sg_err_set(err, SG_EINVAL, "unreadable parameters of "
		    "the password-based encryption");
	rc = integer(pbe->iter, &n, err);
	if (rc == 0)
		rc = count(n, total, err);
	PBEPARAM_free(pbe);
	return rc;
}

static int
check_bags(const STACK_OF(PKCS12_SAFEBAG) *bags, int depth, uint64_t *total,
	   struct sg_err *err)
{
	const X509_ALGOR *alg;
	int rc = SG_OK;

	if (depth > MAX_SAFE_DEPTH)
		return sg_err_set(err, SG_ELIMIT, "PKCS#12 bags nested too deep");
	for (int i = 0; rc == 0 && i < sk_PKCS12_SAFEBAG_num(bags); i++) {
		const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);

		switch (PKCS12_SAFEBAG_get_nid(bag)) {
		case NID_pkcs8ShroudedKeyBag:
			X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, NULL);
			rc = check_alg(alg, total, err);
			break;
		case NID_safeContentsBag:
			rc = check_bags(PKCS12_SAFEBAG_get0_safes(bag), depth + 1,
			    total, err);
			break;
		default:
			break;
		}
	}
	return rc;
}

/* One authenticated safe: plain data, or encrypted data whose own
 * parameters are checked before it is decrypted to see its bags. */
static int
check_safe(PKCS7 *p7, const char *pass, uint64_t *total, struct sg_err *err)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	int rc = SG_OK;

	switch (OBJ_obj2nid(p7->type)) {
	case NID_pkcs7_data:
		bags = PKCS12_unpack_p7data(p7);
		break;
	case NID_pkcs7_encrypted:
		if (p7->d.encrypted == NULL || p7->d.encrypted->enc_data == NULL)
			return sg_err_set(err, SG_EINVAL, "unreadable PKCS#12 file");
		rc = check_alg(p7->d.encrypted->enc_data->algorithm, total, err);
		if (rc == 0)
			bags = PKCS12_unpack_p7encdata(p7, pass, -1);
		if (rc == 0 && bags == NULL && pass != NULL && *pass == '\0')
			bags = PKCS12_unpack_p7encdata(p7, NULL, 0);
		/* A wrong passphrase: PKCS12_parse refuses the file anyway. */
		break;
	default:
		break;
	}
	if (rc == 0 && bags != NULL)
		rc = check_bags(bags, 0, total, err);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	return rc;
}

int
sg_pbe_check_pkcs12(PKCS12 *p12, const char *pass, uint64_t *total,
		    struct sg_err *err)
{
	const ASN1_INTEGER *iter = NULL;
	STACK_OF(PKCS7) *safes;
	uint64_t n = 1;
	int rc = SG_OK;

	PKCS12_get0_mac(NULL, NULL, NULL, &iter, p12);
	if (iter != NULL)
		rc = integer(iter, &n, err);
	if (rc == 0)
		rc = count(n, total, err);
	if (rc < 0)
		goto out;
	safes = PKCS12_unpack_authsafes(p12);
	for (int i = 0; rc == 0 && i < sk_PKCS7_num(safes); i++)
		rc = check_safe(sk_PKCS7_value(safes, i), pass, total, err);
	sk_PKCS7_pop_free(safes, PKCS7_free);
out:
	ERR_clear_error();
	return rc;
}

int
sg_pbe_check_pkcs8(const unsigned char *der, long len, uint64_t *total,
		   struct sg_err *err)
{
	X509_SIG *sig = d2i_X509_SIG(NULL, &der, len);
	const X509_ALGOR *alg;
	int rc;

	if (sig == NULL) {
		ERR_clear_error();
		return sg_err_set(err, SG_EINVAL, "bad encrypted private key");
	}
	X509_SIG_get0(sig, &alg, NULL);
	rc = check_alg(alg, total, err);
	X509_SIG_free(sig);
	return rc;
}
