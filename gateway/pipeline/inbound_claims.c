/* What a signed message claims, checked against its valid signature:
 * the From mailbox is the signer's, the From display name shows no other
 * address, and the signature was made when the Date says (so that an old
 * signed message cannot be replayed as a new one). */
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "inbound.h"

void
sg_inbound_claims(const struct sg_msg *msg, const struct sg_policy *pol,
		  struct sg_claims *out)
{
	out->from = sg_msg_header(msg, "From");
	out->date = sg_msg_header(msg, "Date");
	out->dates = sg_msg_header_count(msg, "Date");
	out->date_tolerance = pol->inbound.signature_date_tolerance;
}

/* The one mailbox of the From field, or NULL. (transfer none: list) */
static InternetAddressMailbox *
from_mailbox(const char *from, InternetAddressList **list)
{
	InternetAddress *ia;

	*list = from != NULL ? internet_address_list_parse(NULL, from) : NULL;
	if (*list == NULL || internet_address_list_length(*list) != 1)
		return NULL;
	ia = internet_address_list_get_address(*list, 0);
	return INTERNET_ADDRESS_IS_MAILBOX(ia) ? INTERNET_ADDRESS_MAILBOX(ia)
	    : NULL;
}

/* addr in a form to compare: the domain in ASCII (IDNA), all lower case.
 * (transfer full) */
static char *
comparable(const char *addr)
{
	const char *at = strrchr(addr, '@');
	char *domain, *out;

	if (at == NULL)
		return g_ascii_strdown(addr, -1);
	domain = g_hostname_to_ascii(at + 1);
	out = g_strdup_printf("%.*s@%s", (int)(at - addr), addr,
	    domain != NULL ? domain : at + 1);
	g_free(domain);
	domain = g_ascii_strdown(out, -1);
	g_free(out);
	return domain;
}

static bool
signer_has(const struct sg_sig *sig, const char *addr)
{
	char *want = comparable(addr);
	bool found = false;

	for (guint i = 0; i < sig->addrs->len && !found; i++) {
		char *have = comparable(g_ptr_array_index(sig->addrs, i));

		found = strcmp(want, have) == 0;
		g_free(have);
	}
	g_free(want);
	return found;
}

/* Letters and digits of any script, with their combining marks. */
static bool
word_char(gunichar c)
{
	return g_unichar_isalnum(c) || g_unichar_ismark(c);
}

static bool
local_char(gunichar c)
{
	return word_char(c) || (c > 0 && c < 0x80 &&
	    strchr("!#$%&'*+-/=?^_`{|}~.", (int)c) != NULL);
}

static bool
domain_char(gunichar c)
{
	return word_char(c) || c == '-' || c == '.';
}

/* The domain after u[r]: domain characters, and blanks next to a dot
 * (a reader's eye joins "example . com"); trailing dots and hyphens go.
 * (transfer full) */
static char *
domain_from(const gunichar *u, glong n, glong r)
{
	GString *d = g_string_new(NULL);
	glong next;

	for (glong i = r; i < n; i++) {
		if (domain_char(u[i])) {
			g_string_append_unichar(d, u[i]);
			continue;
		}
		if (!g_unichar_isspace(u[i]))
			break;
		for (next = i; next < n && g_unichar_isspace(u[next]); next++)
			;
		if (!(d->len > 0 && d->str[d->len - 1] == '.') &&
		    !(next < n && u[next] == '.'))
			break;
		i = next - 1;
	}
	while (d->len > 0 && (d->str[d->len - 1] == '.' ||
	    d->str[d->len - 1] == '-'))
		g_string_truncate(d, d->len - 1);
	return g_string_free(d, FALSE);
}

/* The address around the '@' at u[at], or NULL when there is none: a
 * local part and a domain with a dot. Blanks around the '@' are skipped,
 * as a reader's eye skips them. (transfer full) */
static char *
address_at(const gunichar *u, glong n, glong at)
{
	glong l = at, r = at + 1, ls;
	char *local, *domain, *addr = NULL;

	while (l > 0 && g_unichar_isspace(u[l - 1]))
		l--;
	while (r < n && g_unichar_isspace(u[r]))
		r++;
	for (ls = l; ls > 0 && local_char(u[ls - 1]); ls--)
		;
	while (ls < l && (u[ls] == '\'' || u[ls] == '`' || u[ls] == '.'))
		ls++;
	if (ls == l)
		return NULL;
	local = g_ucs4_to_utf8(u + ls, l - ls, NULL, NULL, NULL);
	domain = domain_from(u, n, r);
	if (local != NULL && strchr(domain, '.') != NULL && domain[0] != '.')
		addr = g_strdup_printf("%s@%s", local, domain);
	g_free(local);
	g_free(domain);
	return addr;
}

/* Characters a reader takes for a full stop although NFKC keeps them. */
static bool
dot_like(gunichar c)
{
	static const gunichar dots[] = {
		0x00b7, 0x0589, 0x06d4, 0x0701, 0x0702, 0x1362, 0x2e31,
		0x3002, 0xa4f8, 0xff61,
	};

	for (size_t i = 0; i < G_N_ELEMENTS(dots); i++)
		if (c == dots[i])
			return true;
	return false;
}

/* Controls that reorder what a reader sees (RLO "moc.elpmaxe@oec"). */
static bool
bidi_control(gunichar c)
{
	return c == 0x061c || c == 0x200e || c == 0x200f ||
	    (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/* The display name as characters: compatibility forms folded (a
 * full-width or small commercial at is an '@'), the dots IDNA takes for
 * label separators and look-alike full stops made '.', invisible format
 * characters (zero-width space and joiners, bidi controls) dropped;
 * *reordered when a bidi control was among them. (transfer full) */
static gunichar *
visible_chars(const char *name, glong *n, bool *reordered)
{
	char *norm = g_utf8_normalize(name, -1, G_NORMALIZE_NFKC);
	size_t len = strlen(name);
	gunichar *u;
	glong k = 0, all;

	if (norm != NULL) {
		u = g_utf8_to_ucs4_fast(norm, -1, &all);
	} else { /* not UTF-8: byte by byte */
		u = g_new(gunichar, len + 1);
		for (all = 0; all < (glong)len; all++)
			u[all] = (guchar)name[all];
	}
	*reordered = false;
	for (glong i = 0; i < all; i++) {
		if (dot_like(u[i]))
			u[i] = '.';
		if (bidi_control(u[i]))
			*reordered = true;
		if (g_unichar_type(u[i]) != G_UNICODE_FORMAT)
			u[k++] = u[i];
	}
	u[k] = 0;
	g_free(norm);
	*n = k;
	return u;
}

/* True when the display name shows an address that is not the signer's
 * (the "Johnny, you are fired" trick). */
static bool
name_shows_other(const char *name, const struct sg_sig *sig)
{
	glong n;
	gunichar *u;
	bool other = false, reordered;

	if (name == NULL)
		return false;
	u = visible_chars(name, &n, &reordered);
	for (glong i = 0; i < n && !other; i++) {
		char *addr = u[i] == '@' ? address_at(u, n, i) : NULL;

		/* Reordered text shows something else than it holds ("moc.
		 * elpmaxe@oec" shown backwards): any '@' in it counts. */
		other = u[i] == '@' && (reordered || (addr != NULL &&
		    !signer_has(sig, addr)));
		g_free(addr);
	}
	g_free(u);
	return other;
}

/* Why the signature's time does not fit the Date field, or NULL. */
static const char *
date_problem(const struct sg_claims *c, const struct sg_sig *sig)
{
	GDateTime *dt;
	long long diff;

	if (c->dates == 0 || c->date == NULL)
		return "no-date";
	/* Which of two Date fields a mail program shows is its choice. */
	if (c->dates > 1)
		return "bad-date";
	dt = g_mime_utils_header_decode_date(c->date);
	if (dt == NULL)
		return "bad-date";
	diff = (long long)g_date_time_to_unix(dt) - (long long)sig->created;
	g_date_time_unref(dt);
	if (sig->created == 0)
		return "no-signing-time";
	return llabs(diff) > c->date_tolerance ? "date-mismatch" : NULL;
}

static void
downgrade(struct sg_sig *sig, enum sg_sig_status status, const char *reason)
{
	sig->status = status;
	g_strlcpy(sig->reason, reason, sizeof(sig->reason));
}

void
sg_inbound_check_signer(const struct sg_claims *claims, struct sg_sig *sig)
{
	InternetAddressList *list = NULL;
	InternetAddressMailbox *mb;
	const char *why;

	if (sig->status != SG_SIG_VALID)
		return;
	mb = from_mailbox(claims->from, &list);
	if (mb == NULL ||
	    !signer_has(sig, internet_address_mailbox_get_idn_addr(mb)))
		downgrade(sig, SG_SIG_SIGNER_MISMATCH,
		    "signer is not the From address");
	else if (name_shows_other(internet_address_get_name(
	    INTERNET_ADDRESS(mb)), sig))
		downgrade(sig, SG_SIG_SIGNER_MISMATCH, "display-name");
	else if ((why = date_problem(claims, sig)) != NULL)
		downgrade(sig, SG_SIG_INVALID, why);
	if (list != NULL)
		g_object_unref(list);
}
