/* The S/MIME content encryption of a message: what a rule or the default
 * forces, or the strongest cipher every recipient is known to read (RFC
 * 8551 2.7); see include/sealgate/plan.h. */
#include <stdio.h>
#include <string.h>

#include "pipeline_int.h"
#include "sealgate/smime.h"
#include "sealgate/smimecaps.h"

/* What a recipient whose capabilities are unknown is taken to read:
 * AES-CBC in EnvelopedData, which every S/MIME client reads (gpgsm 2.2,
 * for one, cannot read AuthEnvelopedData). */
#define UNKNOWN_READS (SG_SMIME_CAP(SG_SMIME_AES256_CBC) | \
	SG_SMIME_CAP(SG_SMIME_AES128_CBC))

/* Names at most this many recipients in a reason. */
#define NAMES_MAX 3

void
sg_cipher_caps(const struct sg_keystore *ks, struct sg_cipher_rcpt *r,
	       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sg_smime_caps caps;
		struct sg_err err = { 0 };

		r[i].caps = 0;
		if (r[i].fpr != NULL &&
		    sg_smime_caps_get(ks, r[i].fpr, &caps, &err) == 0)
			r[i].caps = caps.ciphers;
	}
}

/* The strongest cipher of set, -1 when it is empty. */
static int
strongest(unsigned set)
{
	/* The enum runs from the strongest to the most compatible. */
	for (int c = SG_SMIME_AES256_GCM; c <= SG_SMIME_AES128_CBC; c++)
		if (set & SG_SMIME_CAP(c))
			return c;
	return -1;
}

static bool
unknown(const struct sg_cipher_rcpt *r)
{
	return r->forced < 0 && r->caps == 0;
}

/* "a@b, c@d and 2 more": the recipients whose capabilities are unknown. */
static void
unknown_names(const struct sg_cipher_rcpt *r, size_t n, GString *out)
{
	unsigned shown = 0, more = 0;

	for (size_t i = 0; i < n; i++) {
		if (!unknown(&r[i]))
			continue;
		if (shown == NAMES_MAX) {
			more++;
			continue;
		}
		g_string_append_printf(out, "%s%s", shown ? ", " : "", r[i].addr);
		shown++;
	}
	if (more > 0)
		g_string_append_printf(out, " and %u more", more);
}

int
sg_cipher_choose(const struct sg_cipher_rcpt *r, size_t n, char *why,
		 size_t len)
{
	unsigned common = SG_SMIME_CAPS_ALL;
	const char *forced_by = NULL;
	int forced = -1, chosen = -1, best;
	bool by_caps = false, any_unknown = false;
	GString *names;

	for (size_t i = 0; i < n; i++) {
		if (r[i].forced >= 0) {
			if (r[i].forced > forced) {
				forced = r[i].forced;
				forced_by = r[i].forced_by;
			}
			continue;
		}
		by_caps = true;
		any_unknown |= r[i].caps == 0;
		common &= r[i].caps != 0 ? r[i].caps : UNKNOWN_READS;
	}
	best = strongest(common);
	if (by_caps)
		chosen = best >= 0 ? best : SG_SMIME_AES256_CBC;
	/* Of what is forced and what the capabilities allow, the more
	 * compatible serves every recipient. */
	if (forced >= 0 && forced >= chosen) {
		snprintf(why, len, "forced by %s%s%s", forced_by != NULL ?
		    "rule \"" : "outbound.default", forced_by != NULL ?
		    forced_by : "", forced_by != NULL ? "\"" : "");
		return forced;
	}
	if (!by_caps) {
		snprintf(why, len, "no recipient");
		return SG_SMIME_AES256_CBC;
	}
	names = g_string_new(NULL);
	unknown_names(r, n, names);
	if (best < 0)
		snprintf(why, len, "no cipher that all recipients announced");
	else if (!any_unknown)
		snprintf(why, len, "all recipients announced it");
	else if (chosen == SG_SMIME_AES256_CBC)
		snprintf(why, len, "capabilities of %s unknown", names->str);
	else
		snprintf(why, len, "the strongest all recipients read; "
		    "capabilities of %s unknown", names->str);
	g_string_free(names, TRUE);
	return chosen;
}

void
sg_plan_cipher(struct sg_plan *plan, const struct sg_keystore *ks)
{
	struct sg_cipher_rcpt *r = (struct sg_cipher_rcpt *)
	    plan->cipher_rcpts->data;
	size_t n = plan->cipher_rcpts->len;

	sg_cipher_caps(ks, r, n);
	plan->cipher = sg_cipher_choose(r, n, plan->cipher_why,
	    sizeof(plan->cipher_why));
}
