/* Header helpers: unfolding and decoding values, Microsoft Information
 * Protection labels, the Subject tag; see include/sealgate/header.h. */
#include <string.h>

#include <gmime/gmime.h>

#include "sealgate/header.h"

char *
sg_header_unfold(const char *text)
{
	GString *s = g_string_new(NULL);

	/* A line break followed by white space is just the white space. */
	for (const char *p = text; *p; p++) {
		if ((*p == '\r' || *p == '\n') &&
		    (p[1] == ' ' || p[1] == '\t' ||
		    (*p == '\r' && p[1] == '\n' && (p[2] == ' ' || p[2] == '\t'))))
			continue;
		g_string_append_c(s, *p);
	}
	return g_string_free(s, FALSE);
}

char *
sg_header_decode(const char *value)
{
	char *unfolded = sg_header_unfold(value), *decoded;

	g_strdelimit(unfolded, "\r\n", ' ');
	decoded = g_mime_utils_header_decode_text(NULL, unfolded);
	g_free(unfolded);
	return decoded;
}

/* One "key=value" item of msip_labels. */
static void
mip_item(const char *item, GHashTable *names, GHashTable *disabled)
{
	const char *eq = strchr(item, '='), *guid, *suffix;
	char *key, *id;

	if (eq == NULL || g_ascii_strncasecmp(item, "MSIP_Label_", 11) != 0)
		return;
	key = g_strstrip(g_strndup(item, (gsize)(eq - item)));
	guid = key + 11;
	suffix = strrchr(guid, '_');
	if (suffix == NULL || suffix == guid) {
		g_free(key);
		return;
	}
	id = g_ascii_strdown(guid, suffix - guid);
	if (g_ascii_strcasecmp(suffix, "_Name") == 0) {
		g_hash_table_replace(names, id, g_strstrip(g_strdup(eq + 1)));
		id = NULL;
	} else if (g_ascii_strcasecmp(suffix, "_Enabled") == 0) {
		char *v = g_strstrip(g_strdup(eq + 1));

		if (g_ascii_strcasecmp(v, "false") == 0) {
			g_hash_table_add(disabled, id);
			id = NULL;
		}
		g_free(v);
	}
	g_free(id);
	g_free(key);
}

void
sg_mip_labels(const char *value, GPtrArray *out)
{
	GHashTable *names = g_hash_table_new_full(g_str_hash, g_str_equal,
	    g_free, g_free);
	GHashTable *disabled = g_hash_table_new_full(g_str_hash, g_str_equal,
	    g_free, NULL);
	char **items = g_strsplit(value, ";", -1);
	GHashTableIter it;
	gpointer id, name;

	for (char **p = items; *p != NULL; p++)
		mip_item(g_strstrip(*p), names, disabled);
	g_hash_table_iter_init(&it, names);
	while (g_hash_table_iter_next(&it, &id, &name))
		if (!g_hash_table_contains(disabled, id) && *(char *)name)
			g_ptr_array_add(out, g_strdup(name));
	g_strfreev(items);
	g_hash_table_destroy(names);
	g_hash_table_destroy(disabled);
}

/* Case-insensitive (ASCII) search. */
static const char *
find_caseless(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	if (n == 0)
		return NULL;
	for (const char *p = hay; *p; p++)
		if (g_ascii_strncasecmp(p, needle, n) == 0)
			return p;
	return NULL;
}

bool
sg_subject_has_tag(const char *subject, const char *tag)
{
	return find_caseless(subject, tag) != NULL;
}

char *
sg_subject_strip_tag(const char *subject, const char *tag)
{
	const char *at, *after;
	GString *s;
	char *rest;

	at = find_caseless(subject, tag);
	if (at == NULL)
		return NULL;
	after = at + strlen(tag);
	s = g_string_new_len(subject, at - subject);
	/* Keep one space between the parts, none at the ends. */
	while (s->len > 0 && g_ascii_isspace(s->str[s->len - 1]))
		g_string_truncate(s, s->len - 1);
	while (g_ascii_isspace(*after))
		after++;
	if (s->len > 0 && *after)
		g_string_append_c(s, ' ');
	g_string_append(s, after);
	/* Every occurrence goes. */
	rest = sg_subject_strip_tag(s->str, tag);
	if (rest != NULL) {
		g_string_free(s, TRUE);
		return rest;
	}
	return g_string_free(s, FALSE);
}

char *
sg_subject_encode(const char *text)
{
	char *encoded, *header, *folded, *value;
	size_t len;

	encoded = g_mime_utils_header_encode_text(NULL, text, "utf-8");
	header = g_strdup_printf("Subject: %s", encoded);
	folded = g_mime_utils_unstructured_header_fold(NULL, NULL, header);
	value = folded + strlen("Subject:");
	while (*value == ' ')
		value++;
	value = g_strdup(value);
	len = strlen(value);
	while (len > 0 && (value[len - 1] == '\n' || value[len - 1] == '\r'))
		value[--len] = '\0';
	g_free(encoded);
	g_free(header);
	g_free(folded);
	return value;
}

/* States of the scan: at the start of a line, after a CR that starts a
 * line, inside a line. */
enum { AT_LINE_START, AFTER_CR, IN_LINE };

bool
sg_header_line_empty(const char *line, size_t len)
{
	return len == 0 || (len == 1 && line[0] == '\r');
}

void
sg_header_end_init(struct sg_header_end *he)
{
	he->seen = 0;
	he->state = AT_LINE_START;
	he->found = false;
	he->body = 0;
}

bool
sg_header_end_feed(struct sg_header_end *he, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len && !he->found; i++) {
		switch (p[i]) {
		case '\n':
			if (he->state != IN_LINE) {
				he->found = true;
				he->body = he->seen + i + 1;
			}
			he->state = AT_LINE_START;
			break;
		case '\r':
			he->state = he->state == AT_LINE_START ? AFTER_CR : IN_LINE;
			break;
		default:
			he->state = IN_LINE;
			break;
		}
	}
	he->seen += len;
	return he->found;
}

gssize
sg_header_end(const void *buf, size_t len)
{
	struct sg_header_end he;

	sg_header_end_init(&he);
	return sg_header_end_feed(&he, buf, len) ? (gssize)he.body : -1;
}
