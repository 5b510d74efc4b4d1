/* How a message is rewritten into its protected form: which header
 * fields move inside, which edits the MTA must apply. */
#include <string.h>

#include <gmime/gmime.h>

#include "sealgate/mime.h"
#include "sealgate/rewrite.h"

static bool
is_content_header(const char *name)
{
	return g_ascii_strncasecmp(name, "Content-", 8) == 0;
}

static void
append_header(GString *s, const struct sg_header *h)
{
	g_string_append_printf(s, "%s: ", h->name);
	for (const char *p = h->value; *p; p++) {
		if (*p == '\n' && (p == h->value || p[-1] != '\r'))
			g_string_append_c(s, '\r');
		g_string_append_c(s, *p);
	}
	g_string_append(s, "\r\n");
}

/* The Content-* header block of the message, CRLF, ending in an empty line. */
GString *
sg_rewrite_content_headers(const struct sg_msg *msg)
{
	GString *s = g_string_new(NULL);

	for (guint i = 0; i < msg->headers->len; i++) {
		const struct sg_header *h = g_ptr_array_index(msg->headers, i);

		if (is_content_header(h->name))
			append_header(s, h);
	}
	g_string_append(s, "\r\n");
	return s;
}

static void
collect_addresses(InternetAddressList *list, GHashTable *set)
{
	int n = list != NULL ? internet_address_list_length(list) : 0;

	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(list, i);

		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			collect_addresses(internet_address_group_get_members(
			    INTERNET_ADDRESS_GROUP(ia)), set);
		} else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
			const char *a = internet_address_mailbox_get_idn_addr(
			    INTERNET_ADDRESS_MAILBOX(ia));

			if (a != NULL)
				g_hash_table_add(set, g_ascii_strdown(a, -1));
		}
	}
}

/* True when some envelope recipient is not named in To or Cc (a Bcc):
 * then nobody may learn the other recipients from the key ids. */
bool
sg_rewrite_has_hidden_recipient(const struct sg_msg *msg)
{
	GHashTable *named = g_hash_table_new_full(g_str_hash, g_str_equal,
	    g_free, NULL);
	bool hidden = false;

	for (guint i = 0; i < msg->headers->len; i++) {
		const struct sg_header *h = g_ptr_array_index(msg->headers, i);
		InternetAddressList *list;

		if (g_ascii_strcasecmp(h->name, "To") != 0 &&
		    g_ascii_strcasecmp(h->name, "Cc") != 0)
			continue;
		list = internet_address_list_parse(NULL, h->value);
		collect_addresses(list, named);
		if (list != NULL)
			g_object_unref(list);
	}
	for (guint i = 0; i < msg->rcpts->len && !hidden; i++) {
		const struct sg_rcpt *r = g_ptr_array_index(msg->rcpts, i);
		char *lower = g_ascii_strdown(r->addr, -1);

		hidden = !g_hash_table_contains(named, lower);
		g_free(lower);
	}
	g_hash_table_destroy(named);
	return hidden;
}

void
sg_rewrite_content_edits(const struct sg_msg *msg, const char *ctype,
			 const char *const *extra, struct sg_edits *ed)
{
	GHashTable *done = g_hash_table_new_full(g_str_hash, g_str_equal,
	    g_free, NULL);

	for (guint i = 0; i < msg->headers->len; i++) {
		const struct sg_header *h = g_ptr_array_index(msg->headers, i);
		char *lower;
		unsigned n;

		if (!is_content_header(h->name) ||
		    g_ascii_strcasecmp(h->name, "Content-Type") == 0)
			continue;
		lower = g_ascii_strdown(h->name, -1);
		if (g_hash_table_contains(done, lower)) {
			g_free(lower);
			continue;
		}
		g_hash_table_add(done, lower);
		/* Highest index first: the others keep their numbers. */
		for (n = sg_msg_header_count(msg, h->name); n > 0; n--)
			sg_edits_add(ed, SG_HDR_DELETE, h->name, n, NULL);
	}
	if (sg_msg_header(msg, "Content-Type") != NULL)
		sg_edits_add(ed, SG_HDR_CHANGE, "Content-Type", 1, ctype);
	else
		sg_edits_add(ed, SG_HDR_ADD, "Content-Type", 0, ctype);
	for (; extra != NULL && *extra != NULL; extra += 2)
		sg_edits_add(ed, SG_HDR_ADD, extra[0], 0, extra[1]);
	if (sg_msg_header(msg, "MIME-Version") == NULL)
		sg_edits_add(ed, SG_HDR_ADD, "MIME-Version", 0, "1.0");
	g_hash_table_destroy(done);
}
