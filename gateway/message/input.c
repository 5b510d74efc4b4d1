/* Messages as bytes: read a message the way an MTA would hand it to the
 * milter, and write the result of the edits the way an MTA would apply
 * them; see include/sealgate/input.h. */
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "sealgate/header.h"
#include "sealgate/input.h"

#define HEADER_BLOCK_MAX (4 * 1024 * 1024)
#define CHUNK 65536

/* A header field of the input file, as bytes and as the MTA would see it. */
struct field {
	char *name;
	char *value;      /* unfolded the milter way: "\n" + white space */
	size_t off, len;  /* raw bytes in the input, line ending included */
	char *new_value;  /* set by an SG_HDR_CHANGE */
	bool deleted;
	bool added;
};

struct sg_input {
	struct sg_spool *raw;   /* the file exactly as read */
	GPtrArray *fields;      /* struct field * */
	size_t body_off;        /* first byte of the body */
	const char *eol;        /* "\r\n" or "\n", as the input uses */
	bool header_overflow;
};

static void
field_free(gpointer p)
{
	struct field *f = p;

	g_free(f->name);
	g_free(f->value);
	g_free(f->new_value);
	g_free(f);
}

/* Reads the header block (up to the empty line) into memory. */
static GString *
header_block(struct sg_input *in)
{
	GString *s = g_string_new(NULL);
	struct sg_header_end he;
	char buf[4096];
	size_t n;
	off_t off = 0;

	sg_header_end_init(&he);
	while (s->len < HEADER_BLOCK_MAX &&
	    sg_spool_read_at(in->raw, off, buf, sizeof(buf), &n) == 0 && n > 0) {
		g_string_append_len(s, buf, (gssize)n);
		off += (off_t)n;
		if (sg_header_end_feed(&he, buf, n))
			break;
	}
	if (s->len >= HEADER_BLOCK_MAX)
		in->header_overflow = true;
	return s;
}

static bool
is_field_start(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len && line[i] != ':'; i++)
		if ((unsigned char)line[i] <= ' ' || (unsigned char)line[i] >= 127)
			return false;
	return i > 0 && i < len;
}

static size_t
line_length(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	return nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
}

/* The field's value as the MTA passes it to a milter. */
static char *
field_value(const char *raw, size_t len)
{
	const char *colon = memchr(raw, ':', len), *p = colon + 1;
	const char *end = raw + len;
	GString *v = g_string_new(NULL);

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	for (; p < end; p++)
		if (*p != '\r')
			g_string_append_c(v, *p);
	while (v->len > 0 && v->str[v->len - 1] == '\n')
		g_string_truncate(v, v->len - 1);
	return g_string_free(v, FALSE);
}

static void
parse_input(struct sg_input *in)
{
	GString *blk = header_block(in);
	const char *p = blk->str, *end = blk->str + blk->len;
	struct field *f = NULL;

	in->fields = g_ptr_array_new_with_free_func(field_free);
	in->eol = "\n";
	if (blk->len > 0) {
		size_t first = line_length(p, end);

		if (first >= 2 && p[first - 1] == '\n' && p[first - 2] == '\r')
			in->eol = "\r\n";
		/* An mbox "From " line is no part of the message: an MTA never
		 * passes it on. It is dropped from a changed message. */
		if (strncmp(p, "From ", 5) == 0)
			p += first;
	}
	while (p < end) {
		size_t len = line_length(p, end);

		if (p[len - 1] == '\n' && sg_header_line_empty(p, len - 1)) {
			p += len;       /* the empty line ends the header */
			break;
		}
		if ((*p == ' ' || *p == '\t') && f != NULL) {
			f->len += len;  /* continuation line */
		} else if (is_field_start(p, len)) {
			f = g_new0(struct field, 1);
			f->off = (size_t)(p - blk->str);
			f->len = len;
			f->name = g_strndup(p, (gsize)(strchr(p, ':') - p));
			g_ptr_array_add(in->fields, f);
		} else {
			break;          /* not a header: the body starts here */
		}
		p += len;
	}
	for (guint i = 0; i < in->fields->len; i++) {
		f = g_ptr_array_index(in->fields, i);
		f->value = field_value(blk->str + f->off, f->len);
	}
	in->body_off = (size_t)(p - blk->str);
	g_string_free(blk, TRUE);
}

int
sg_input_to_msg(struct sg_input *in, const char *spool_dir,
		const struct sg_envelope *env, struct sg_msg **out)
{
	struct sg_msg *msg;
	char buf[CHUNK];
	size_t n;
	off_t off;
	int rc;

	rc = sg_envelope_to_msg(env, spool_dir, &msg);
	if (rc < 0)
		return rc;
	if (in->header_overflow)
		msg->limit_error = SG_ELIMIT;
	for (guint i = 0; i < in->fields->len && rc == 0; i++) {
		struct field *f = g_ptr_array_index(in->fields, i);

		rc = sg_msg_add_header(msg, f->name, f->value);
		if (rc == SG_ELIMIT)
			rc = 0; /* recorded in msg->limit_error */
	}
	if (rc == 0)
		rc = sg_msg_end_headers(msg);
	for (off = (off_t)in->body_off; rc == 0; off += (off_t)n) {
		rc = sg_spool_read_at(in->raw, off, buf, sizeof(buf), &n);
		if (rc < 0 || n == 0)
			break;
		rc = sg_msg_add_body(msg, buf, n);
	}
	if (rc < 0) {
		sg_msg_free(msg);
		return rc;
	}
	*out = msg;
	return SG_OK;
}

static struct field *
nth_field(struct sg_input *in, const char *name, unsigned index)
{
	unsigned seen = 0;

	for (guint i = 0; i < in->fields->len; i++) {
		struct field *f = g_ptr_array_index(in->fields, i);

		if (f->deleted || g_ascii_strcasecmp(f->name, name) != 0)
			continue;
		if (++seen == index)
			return f;
	}
	return NULL;
}

/* Applies the header edits the way an MTA does: indexes count the fields
 * of that name that are still there. SG_EINVAL (nothing applied) for a
 * name no header can carry, as the milter refuses it. */
static int
apply_header_edits(struct sg_input *in, const struct sg_edits *ed)
{
	for (guint i = 0; i < ed->hdr->len; i++)
		if (!sg_header_name_ok(((struct sg_hdr_edit *)
		    g_ptr_array_index(ed->hdr, i))->name))
			return SG_EINVAL;
	for (guint i = 0; i < ed->hdr->len; i++) {
		const struct sg_hdr_edit *e = g_ptr_array_index(ed->hdr, i);
		struct field *f;

		if (e->op == SG_HDR_ADD) {
			f = g_new0(struct field, 1);
			f->name = g_strdup(e->name);
			f->new_value = g_strdup(e->value);
			f->added = true;
			g_ptr_array_add(in->fields, f);
			continue;
		}
		f = nth_field(in, e->name, e->index);
		if (f == NULL)
			continue;
		if (e->op == SG_HDR_DELETE) {
			f->deleted = true;
		} else {
			g_free(f->new_value);
			f->new_value = g_strdup(e->value);
		}
	}
	return SG_OK;
}

static int
put(FILE *fp, const void *buf, size_t len)
{
	return len == 0 || fwrite(buf, 1, len, fp) == len ? 0 : SG_EIO;
}

/* Writes text whose line breaks are "\n" or "\r\n" with the input's eol. */
static int
put_text(FILE *fp, const char *p, size_t len, const char *eol, bool *cr)
{
	int rc = 0;

	for (size_t i = 0; i < len && rc == 0; i++) {
		if (p[i] == '\r') {
			*cr = true;
			continue;
		}
		if (*cr && p[i] != '\n')
			rc = put(fp, "\r", 1);
		*cr = false;
		if (rc == 0)
			rc = p[i] == '\n' ? put(fp, eol, strlen(eol))
			    : put(fp, p + i, 1);
	}
	return rc;
}

static int
copy_spool(FILE *fp, struct sg_spool *sp, off_t from, const char *eol)
{
	char buf[CHUNK];
	bool cr = false;
	size_t n;
	int rc;

	for (;; from += (off_t)n) {
		rc = sg_spool_read_at(sp, from, buf, sizeof(buf), &n);
		if (rc < 0 || n == 0)
			break;
		rc = eol != NULL ? put_text(fp, buf, n, eol, &cr) : put(fp, buf, n);
		if (rc < 0)
			break;
	}
	if (rc == 0 && cr)
		rc = put(fp, "\r", 1);
	return rc;
}

int
sg_input_write_to(struct sg_input *in, const struct sg_edits *ed, FILE *fp)
{
	char buf[CHUNK];
	bool cr = false;
	size_t n;
	int rc = 0;

	if (sg_edits_empty(ed))
		return copy_spool(fp, in->raw, 0, NULL);
	rc = apply_header_edits(in, ed);
	for (guint i = 0; i < in->fields->len && rc == 0; i++) {
		struct field *f = g_ptr_array_index(in->fields, i);

		if (f->deleted)
			continue;
		if (f->new_value == NULL) {
			rc = sg_spool_read_at(in->raw, (off_t)f->off, buf,
			    MIN(f->len, sizeof(buf)), &n);
			if (rc == 0)
				rc = put(fp, buf, n);
			/* A field longer than CHUNK: write the rest. */
			for (size_t done = n; rc == 0 && done < f->len; done += n) {
				rc = sg_spool_read_at(in->raw, (off_t)(f->off + done),
				    buf, MIN(f->len - done, sizeof(buf)), &n);
				if (rc == 0 && n == 0)
					rc = SG_EIO;
				if (rc == 0)
					rc = put(fp, buf, n);
			}
			continue;
		}
		rc = put(fp, f->name, strlen(f->name));
		if (rc == 0)
			rc = put(fp, ": ", 2);
		if (rc == 0)
			rc = put_text(fp, f->new_value, strlen(f->new_value),
			    in->eol, &cr);
		if (rc == 0)
			rc = put(fp, in->eol, strlen(in->eol));
	}
	if (rc == 0)
		rc = put(fp, in->eol, strlen(in->eol));
	if (rc == 0 && ed->body != NULL)
		rc = copy_spool(fp, ed->body, 0, in->eol);
	else if (rc == 0)
		rc = copy_spool(fp, in->raw, (off_t)in->body_off, NULL);
	return rc;
}

int
sg_envelope_to_msg(const struct sg_envelope *env, const char *spool_dir,
		   struct sg_msg **out)
{
	struct sg_msg *msg;
	int rc;

	rc = sg_msg_new(spool_dir, &msg);
	if (rc < 0)
		return rc;
	msg->client_ip = g_strdup(env->client_ip);
	msg->auth_user = g_strdup(env->auth);
	sg_msg_set_sender(msg, env->from);
	for (guint i = 0; i < env->to->len && rc == 0; i++)
		rc = sg_msg_add_rcpt(msg, g_ptr_array_index(env->to, i),
		    SG_CLASS_NONE, NULL);
	if (rc < 0) {
		sg_msg_free(msg);
		return rc;
	}
	*out = msg;
	return SG_OK;
}

struct sg_input *
sg_input_new(struct sg_spool *raw)
{
	struct sg_input *in = g_new0(struct sg_input, 1);

	in->raw = raw;
	parse_input(in);
	return in;
}

void
sg_input_free(struct sg_input *in)
{
	if (in == NULL)
		return;
	if (in->fields != NULL)
		g_ptr_array_free(in->fields, TRUE);
	sg_spool_free(in->raw);
	g_free(in);
}
