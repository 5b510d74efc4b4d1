/* Edit list; see include/sealgate/edits.h. */
#include "sealgate/edits.h"

static void
hdr_edit_free(gpointer p)
{
	struct sg_hdr_edit *e = p;

	g_free(e->name);
	g_free(e->value);
	g_free(e);
}

void
sg_edits_init(struct sg_edits *ed)
{
	ed->hdr = g_ptr_array_new_with_free_func(hdr_edit_free);
	ed->body = NULL;
}

bool
sg_header_name_ok(const char *name)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++, n++)
		if (*p <= ' ' || *p >= 0x7f || *p == ':')
			return false;
	return n > 0 && n <= 998;
}

int
sg_edits_add(struct sg_edits *ed, enum sg_hdr_op op, const char *name,
	     unsigned index, const char *value)
{
	struct sg_hdr_edit *e = g_new0(struct sg_hdr_edit, 1);

	e->op = op;
	e->name = g_strdup(name);
	e->value = g_strdup(value);
	e->index = index;
	g_ptr_array_add(ed->hdr, e);
	return SG_OK;
}

bool
sg_edits_empty(const struct sg_edits *ed)
{
	return (ed->hdr == NULL || ed->hdr->len == 0) && ed->body == NULL;
}

void
sg_edits_clear(struct sg_edits *ed)
{
	if (ed->hdr != NULL)
		g_ptr_array_free(ed->hdr, TRUE);
	ed->hdr = NULL;
	sg_spool_free(ed->body);
	ed->body = NULL;
}
