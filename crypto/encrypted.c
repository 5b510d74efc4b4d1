/* Content checks for "already encrypted"; see include/sealgate/encrypted.h. */
#include <limits.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "openpgp_packet.h"
#include "sealgate/encrypted.h"

/* The version octet of a packet body is one the standard defines. */
static bool
known_version(int tag, unsigned char v)
{
	switch (tag) {
	case 1:		return v == 3 || v == 6;            /* PKESK */
	case 3:		return v == 4 || v == 5 || v == 6;  /* SKESK */
	case 18:	return v == 1 || v == 2;            /* SEIPD */
	case 20:	return v == 1;                      /* AEAD */
	default:	return false;
	}
}

bool
sg_openpgp_packets_encrypted(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t off = 0, body, total;
	unsigned keys = 0;
	int tag;

	while (off < len) {
		if (!sg_pgp_packet_span(p + off, len - off, &tag, &body, &total) ||
		    total <= body || !known_version(tag, p[off + body]))
			return false;
		if (tag == 1 || tag == 3) {
			/* Session keys come in definite-length packets. */
			if (body == 2 && (p[off] & 0x40) && p[off + 1] >= 224 &&
			    p[off + 1] < 255)
				return false;
			if (++keys > SG_PGP_MAX_SESSION_KEYS)
				return false;
			off += total;
			continue;
		}
		/* tag 18 or 20: the one encrypted data packet, the last. */
		return keys > 0 && off + total == len;
	}
	return false;
}

bool
sg_openpgp_is_encrypted(const void *data, size_t len, bool armored)
{
	const char *p = data, *end;
	GByteArray *bin;
	bool ok;

	if (len == 0)
		return false;   /* data may be NULL */
	end = p + len;
	while (p < end && g_ascii_isspace(*p))
		p++;
	if (!armored && (p == end || *p != '-'))
		return sg_openpgp_packets_encrypted(data, len);
	bin = sg_pgp_dearmor_whole(data, len);
	if (bin == NULL)
		return false;
	ok = sg_openpgp_packets_encrypted(bin->data, bin->len);
	g_byte_array_free(bin, TRUE);
	return ok;
}

bool
sg_smime_is_enveloped(const void *der, size_t len)
{
	const unsigned char *q = der;
	CMS_ContentInfo *cms = NULL;
	bool ok = false;
	int nid;

	if (len == 0 || len > LONG_MAX)
		return false;
	cms = d2i_CMS_ContentInfo(NULL, &q, (long)len);
	if (cms == NULL || q != (const unsigned char *)der + len)
		goto out;
	nid = OBJ_obj2nid(CMS_get0_type(cms));
	if (nid != NID_pkcs7_enveloped && nid != NID_id_smime_ct_authEnvelopedData)
		goto out;
	ok = sk_CMS_RecipientInfo_num(CMS_get0_RecipientInfos(cms)) > 0;
out:
	CMS_ContentInfo_free(cms);
	ERR_clear_error();
	return ok;
}
