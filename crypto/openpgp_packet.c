/* OpenPGP packets and armor; see openpgp_packet.h. */
#include <string.h>

#include "openpgp_packet.h"
#include "sealgate/openpgp.h"

size_t
sg_pgp_packet_header(const unsigned char *p, size_t avail, int *tag,
		     size_t *len)
{
	size_t h;

	if (avail < 2 || !(p[0] & 0x80))
		return 0;
	if (p[0] & 0x40) {                      /* new format */
		*tag = p[0] & 0x3f;
		if (p[1] < 192) {
			*len = p[1];
			h = 2;
		} else if (p[1] < 224 && avail >= 3) {
			*len = ((size_t)(p[1] - 192) << 8) + p[2] + 192;
			h = 3;
		} else if (p[1] == 255 && avail >= 6) {
			*len = ((size_t)p[2] << 24) | ((size_t)p[3] << 16) |
			    ((size_t)p[4] << 8) | p[5];
			h = 6;
		} else {
			return 0;               /* partial lengths: not a PKESK */
		}
	} else {                                /* old format */
		*tag = (p[0] >> 2) & 0x0f;
		switch (p[0] & 3) {
		case 0: *len = p[1]; h = 2; break;
		case 1:
			if (avail < 3)
				return 0;
			*len = ((size_t)p[1] << 8) | p[2];
			h = 3;
			break;
		case 2:
			if (avail < 5)
				return 0;
			*len = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) |
			    ((size_t)p[3] << 8) | p[4];
			h = 5;
			break;
		default:
			return 0;
		}
	}
	return h + *len <= avail ? h : 0;
}

/* A new-format packet with partial body lengths: the chunks up to the
 * last, definite one. */
static bool
partial_span(const unsigned char *p, size_t avail, size_t *total)
{
	size_t off = 1, chunk;
	bool last = false;

	while (!last) {
		if (off >= avail)
			return false;
		if (p[off] >= 224 && p[off] < 255) {
			chunk = (size_t)1 << (p[off] & 0x1f);
			off += 1;
		} else if (p[off] < 192) {
			chunk = p[off];
			off += 1;
			last = true;
		} else if (p[off] < 224) {
			if (avail - off < 2)
				return false;
			chunk = ((size_t)(p[off] - 192) << 8) + p[off + 1] + 192;
			off += 2;
			last = true;
		} else {
			if (avail - off < 5)
				return false;
			chunk = ((size_t)p[off + 1] << 24) | ((size_t)p[off + 2] << 16) |
			    ((size_t)p[off + 3] << 8) | p[off + 4];
			off += 5;
			last = true;
		}
		if (chunk > avail - off)
			return false;
		off += chunk;
	}
	*total = off;
	return true;
}

bool
sg_pgp_packet_span(const unsigned char *p, size_t avail, int *tag,
		   size_t *body, size_t *total)
{
	size_t h, len;

	if (avail >= 2 && (p[0] & 0xc0) == 0xc0 && p[1] >= 224 && p[1] < 255) {
		*tag = p[0] & 0x3f;
		*body = 2;
		return partial_span(p, avail, total);
	}
	h = sg_pgp_packet_header(p, avail, tag, &len);
	if (h == 0)
		return false;
	*body = h;
	*total = h + len;
	return true;
}
