/* Fuzz target: the multipart/signed splitter. The first line of the input
 * is the boundary, the rest the body of a multipart/signed entity, read
 * from a spool as inbound mail's is: sg_split_signed splits it, and
 * sg_inbound_signed_body builds what sealgate delivers of an S/MIME
 * multipart/signed entity with that boundary and body. Checks that the
 * parts lie in order within the body and that a split body has its
 * delimiters where the parts say. */
#include <string.h>

#include "inbound.h"
#include "sealgate/spool.h"
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
check_split(GMimeStream *stream, const guint8 *body, size_t len,
	    const char *boundary)
{
	struct sg_signed_parts parts;
	const guint8 *p1, *p2, *end = body + len;
	size_t l1, l2, bl = strlen(boundary);

	if (!sg_split_signed(stream, boundary, &parts))
		return;
	if (parts.p1 < 0 || parts.l1 < 0 || parts.p2 < 0 || parts.l2 < 0 ||
	    (size_t)parts.p1 + (size_t)parts.l1 > len ||
	    parts.p2 < parts.p1 + parts.l1 ||
	    (size_t)parts.p2 + (size_t)parts.l2 > len)
		fuzz_fail("parts %ld+%ld and %ld+%ld of %zu bytes",
		    (long)parts.p1, (long)parts.l1, (long)parts.p2,
		    (long)parts.l2, len);
	p1 = body + parts.p1;
	l1 = (size_t)parts.l1;
	p2 = body + parts.p2;
	l2 = (size_t)parts.l2;
	/* Each part is preceded by a delimiter line and followed by one. */
	if (p1 - body < (ptrdiff_t)(bl + 3) || p1[-1] != '\n' ||
	    p2 - body < (ptrdiff_t)(bl + 3) || p2[-1] != '\n')
		fuzz_fail("a part does not follow a delimiter line");
	if ((size_t)(end - (p2 + l2)) < bl + 4 ||
	    memcmp(p2 + l2, "--", 2) != 0 ||
	    memcmp(p2 + l2 + 2, boundary, bl) != 0 ||
	    memcmp(p2 + l2 + 2 + bl, "--", 2) != 0)
		fuzz_fail("the second part does not end at the close delimiter");
	(void)l1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const guint8 *nl = memchr(data, '\n', size);
	const guint8 *body = nl != NULL ? nl + 1 : data + size;
	size_t len = (size_t)(data + size - body);
	/* Inputs stay below the spool's memory bound: no file is made. */
	const char *spool_dir = g_get_tmp_dir();
	struct sg_spool *sp = NULL, *out = NULL;
	struct sg_entity e = { NULL, NULL };
	bool covered = false, base64 = false;
	GMimeParser *parser;
	GMimeStream *h;
	char *boundary;
	GString *entity;
	size_t head;

	boundary = g_strndup((const char *)data,
	    (gsize)(nl != NULL ? nl - data : (ptrdiff_t)size));
	if (strlen(boundary) != (size_t)(nl != NULL ? nl - data :
	    (ptrdiff_t)size)) {
		g_free(boundary);  /* a NUL: no boundary parameter has one */
		return 0;
	}
	entity = g_string_new(NULL);
	g_string_append_printf(entity, "Content-Type: multipart/signed; "
	    "protocol=\"application/pkcs7-signature\"; micalg=sha-256; "
	    "boundary=\"%s\"\r\n\r\n", boundary);
	head = entity->len;
	g_string_append_len(entity, (const char *)body, (gssize)len);
	if (sg_spool_new(spool_dir, SG_SPOOL_MEM_LIMIT, &sp) < 0 ||
	    sg_spool_write(sp, entity->str, entity->len) < 0 ||
	    sg_spool_new(spool_dir, SG_SPOOL_MEM_LIMIT, &out) < 0)
		fuzz_fail("spool");
	h = sg_spool_stream(sp, 0, (off_t)head);
	parser = g_mime_parser_new_with_stream(h);
	e.obj = g_mime_parser_construct_part(parser, NULL);
	e.body = sg_spool_stream(sp, (off_t)head, -1);
	check_split(e.body, body, len, boundary);
	if (sg_inbound_signed_body(&e, spool_dir, out, &covered, &base64) < 0)
		fuzz_fail("spool");
	if (covered && (sg_spool_size(out) == 0 || base64))
		fuzz_fail("multipart/signed delivered as %s",
		    base64 ? "base64" : "nothing");
	if (e.obj != NULL)
		g_object_unref(e.obj);
	g_object_unref(e.body);
	g_object_unref(parser);
	g_object_unref(h);
	sg_spool_free(out);
	sg_spool_free(sp);
	g_string_free(entity, TRUE);
	g_free(boundary);
	return 0;
}
