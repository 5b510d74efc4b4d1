/* Fuzz target: the multipart/signed splitter. The first line of the input
 * is the boundary, the rest the body of a multipart/signed entity:
 * sg_split_signed splits it, and sg_inbound_signed_body builds what
 * sealgate delivers of an S/MIME multipart/signed entity with that
 * boundary and body. Checks that the parts lie in order within the body
 * and that a split body has its delimiters where the parts say. */
#include <string.h>

#include "inbound.h"
#include "fuzz_env.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_init_libraries();
	return 0;
}

static void
check_split(const guint8 *body, size_t len, const char *boundary)
{
	const guint8 *p1, *p2, *end = body + len;
	size_t l1, l2, bl = strlen(boundary);

	if (!sg_split_signed(body, len, boundary, &p1, &l1, &p2, &l2))
		return;
	if (p1 < body || l1 > (size_t)(end - p1) || p2 < p1 + l1 ||
	    l2 > (size_t)(end - p2))
		fuzz_fail("parts %td+%zu and %td+%zu of %zu bytes", p1 - body,
		    l1, p2 - body, l2, len);
	/* Each part is preceded by a delimiter line and followed by one. */
	if (p1 - body < (ptrdiff_t)(bl + 3) || p1[-1] != '\n' ||
	    p2 - body < (ptrdiff_t)(bl + 3) || p2[-1] != '\n')
		fuzz_fail("a part does not follow a delimiter line");
	if ((size_t)(end - (p2 + l2)) < bl + 4 ||
	    memcmp(p2 + l2, "--", 2) != 0 ||
	    memcmp(p2 + l2 + 2, boundary, bl) != 0 ||
	    memcmp(p2 + l2 + 2 + bl, "--", 2) != 0)
		fuzz_fail("the second part does not end at the close delimiter");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const guint8 *nl = memchr(data, '\n', size);
	const guint8 *body = nl != NULL ? nl + 1 : data + size;
	size_t len = (size_t)(data + size - body);
	char *boundary;
	GString *entity;
	GByteArray *out = NULL;
	bool base64;

	boundary = g_strndup((const char *)data,
	    (gsize)(nl != NULL ? nl - data : (ptrdiff_t)size));
	if (strlen(boundary) != (size_t)(nl != NULL ? nl - data :
	    (ptrdiff_t)size)) {
		g_free(boundary);  /* a NUL: no boundary parameter has one */
		return 0;
	}
	check_split(body, len, boundary);
	entity = g_string_new(NULL);
	g_string_append_printf(entity, "Content-Type: multipart/signed; "
	    "protocol=\"application/pkcs7-signature\"; micalg=sha-256; "
	    "boundary=\"%s\"\r\n\r\n", boundary);
	g_string_append_len(entity, (const char *)body, (gssize)len);
	if (sg_inbound_signed_body((const guint8 *)entity->str, entity->len,
	    &out, &base64)) {
		if (out == NULL || base64)
			fuzz_fail("multipart/signed delivered as %s",
			    out == NULL ? "nothing" : "base64");
		g_byte_array_free(out, TRUE);
	}
	g_string_free(entity, TRUE);
	g_free(boundary);
	return 0;
}
