/* Values from key material, certificates, policy files and file names,
 * made safe to print on a terminal: an ESC in a user id must not reach
 * it as a control sequence. One helper for every human-readable output. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "sealgate.h"

/* Appends the character (or invalid byte) at p, escaped when it could
 * move the cursor, change the terminal or hide text; returns its length. */
static size_t
escape_one(GString *out, const char *p, const char *end)
{
	gunichar c = g_utf8_get_char_validated(p, end - p);
	size_t n;

	if (c == (gunichar)-1 || c == (gunichar)-2) {
		g_string_append_printf(out, "\\x%02x", (guchar)*p);
		return 1;
	}
	n = (size_t)(g_utf8_next_char(p) - p);
	if (c == '\\')
		g_string_append(out, "\\\\");
	else if (g_unichar_iscntrl(c))     /* C0, DEL, C1 */
		for (size_t i = 0; i < n; i++)
			g_string_append_printf(out, "\\x%02x", (guchar)p[i]);
	else if (g_unichar_type(c) == G_UNICODE_FORMAT ||
	    g_unichar_type(c) == G_UNICODE_LINE_SEPARATOR ||
	    g_unichar_type(c) == G_UNICODE_PARAGRAPH_SEPARATOR)
		g_string_append_printf(out, "\\u%04x", (unsigned)c);
	else
		g_string_append_len(out, p, (gssize)n);
	return n;
}

char *
sg_escape(const char *s)
{
	GString *out;
	const char *end;

	if (s == NULL)
		return g_strdup("(null)");
	out = g_string_sized_new(strlen(s));
	end = s + strlen(s);
	for (const char *p = s; p < end;)
		p += escape_one(out, p, end);
	return g_string_free(out, FALSE);
}

void
sg_tprintf(FILE *fp, const char *fmt, ...)
{
	va_list ap;
	char *text, *safe;
	size_t len;
	bool nl;

	va_start(ap, fmt);
	text = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	len = strlen(text);
	nl = len > 0 && text[len - 1] == '\n';
	if (nl)
		text[len - 1] = '\0';
	safe = sg_escape(text);
	fprintf(fp, "%s%s", safe, nl ? "\n" : "");
	g_free(safe);
	g_free(text);
}
