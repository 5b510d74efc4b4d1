/* Message transaction state; see include/sealgate/msg.h. */
#include <stdlib.h>
#include <string.h>

#include "sealgate/msg.h"

static void
header_free(gpointer p)
{
	struct sg_header *h = p;

	g_free(h->name);
	g_free(h->value);
	g_free(h);
}

static void
rcpt_free(gpointer p)
{
	struct sg_rcpt *r = p;

	g_free(r->addr);
	g_free(r->key_fpr);
	g_free(r);
}

int
sg_msg_new(const char *spool_dir, struct sg_msg **out)
{
	struct sg_msg *msg;
	int rc;

	msg = g_new0(struct sg_msg, 1);
	msg->queue_id = g_strdup("NOQUEUE");
	msg->mail_from = g_strdup("");
	msg->rcpts = g_ptr_array_new_with_free_func(rcpt_free);
	msg->headers = g_ptr_array_new_with_free_func(header_free);
	rc = sg_spool_new(spool_dir, SG_SPOOL_MEM_LIMIT, &msg->spool);
	if (rc < 0) {
		sg_msg_free(msg);
		return rc;
	}
	*out = msg;
	return SG_OK;
}

int
sg_msg_set_sender(struct sg_msg *msg, const char *addr)
{
	g_free(msg->mail_from);
	msg->mail_from = g_strdup(addr);
	return SG_OK;
}

int
sg_msg_add_rcpt(struct sg_msg *msg, const char *addr, enum sg_class cls,
		const char *key_fpr)
{
	struct sg_rcpt *r;

	if (msg->rcpts->len >= SG_MAX_RECIPIENTS)
		return SG_ELIMIT;
	r = g_new0(struct sg_rcpt, 1);
	r->addr = g_strdup(addr);
	r->cls = cls;
	r->key_fpr = g_strdup(key_fpr);
	g_ptr_array_add(msg->rcpts, r);
	return SG_OK;
}

static int
limit(struct sg_msg *msg, const char *what)
{
	if (msg->limit_error == 0) {
		msg->limit_error = SG_ELIMIT;
		g_strlcpy(msg->limit_what, what, sizeof(msg->limit_what));
	}
	return SG_ELIMIT;
}

int
sg_msg_add_header(struct sg_msg *msg, const char *name, const char *value)
{
	struct sg_header *h;
	int rc;

	if (msg->in_body)
		return SG_EINVAL;
	if (msg->headers->len >= SG_MAX_HEADERS)
		return limit(msg, "too many header fields");
	if (strlen(name) + strlen(value) > SG_MAX_HEADER_SIZE)
		return limit(msg, "header field too long");
	h = g_new0(struct sg_header, 1);
	h->name = g_strdup(name);
	h->value = g_strdup(value);
	g_ptr_array_add(msg->headers, h);

	rc = sg_spool_puts(msg->spool, name);
	if (rc == 0)
		rc = sg_spool_write(msg->spool, ": ", 2);
	if (rc == 0)
		rc = sg_spool_write_crlf(msg->spool, value, strlen(value));
	if (rc == 0)
		rc = sg_spool_write(msg->spool, "\r\n", 2);
	return rc;
}

int
sg_msg_end_headers(struct sg_msg *msg)
{
	int rc;

	if (msg->in_body)
		return SG_OK;
	rc = sg_spool_write(msg->spool, "\r\n", 2);
	msg->body_offset = (off_t)sg_spool_size(msg->spool);
	msg->in_body = true;
	return rc;
}

int
sg_msg_add_body(struct sg_msg *msg, const void *buf, size_t len)
{
	int rc;

	if (!msg->in_body) {
		rc = sg_msg_end_headers(msg);
		if (rc < 0)
			return rc;
	}
	return sg_spool_write_crlf(msg->spool, buf, len);
}

const char *
sg_msg_header(const struct sg_msg *msg, const char *name)
{
	for (guint i = 0; i < msg->headers->len; i++) {
		const struct sg_header *h = g_ptr_array_index(msg->headers, i);

		if (g_ascii_strcasecmp(h->name, name) == 0)
			return h->value;
	}
	return NULL;
}

unsigned
sg_msg_header_count(const struct sg_msg *msg, const char *name)
{
	unsigned n = 0;

	for (guint i = 0; i < msg->headers->len; i++) {
		const struct sg_header *h = g_ptr_array_index(msg->headers, i);

		if (g_ascii_strcasecmp(h->name, name) == 0)
			n++;
	}
	return n;
}

const char *
sg_addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

void
sg_msg_free(struct sg_msg *msg)
{
	if (msg == NULL)
		return;
	g_free(msg->queue_id);
	g_free(msg->client_ip);
	g_free(msg->auth_user);
	g_free(msg->mail_from);
	g_ptr_array_free(msg->rcpts, TRUE);
	g_ptr_array_free(msg->headers, TRUE);
	sg_spool_free(msg->spool);
	g_free(msg);
}

bool
sg_addr_valid(const char *addr)
{
	const char *at = strchr(addr, '@');

	if (at == NULL || at == addr || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL || strlen(addr) > 254)
		return false;
	for (const char *p = addr; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ||
		    strchr("<>()[]\\,;:\"", *p) != NULL)
			return false;
	return true;
}
