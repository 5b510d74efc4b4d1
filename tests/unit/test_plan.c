/* The decisions behind "no plaintext where policy requires encryption":
 * what each recipient gets (sg_plan_recipient), what a transaction of
 * several recipients gets (sg_plan_unite) and the refusal that goes with
 * it (sg_plan_refusal). Every row follows README "Policy", "Methods",
 * "Signing" and "Recipients that need different bodies are split". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "sealgate/pipeline.h"
#include "sealgate/plan.h"
#include "pipeline_int.h"

/* Keys the keystore holds for the recipient. */
enum keys { K_NONE, K_PGP, K_SMIME, K_BOTH, N_KEYS };
static const char *const keys_name[] = { "none", "openpgp", "smime", "both" };

/* methods lists. */
enum mlist { M_PS, M_SP, M_S, M_P, N_MLISTS };
static const struct sg_methods mlists[] = {
	{ { SG_METHOD_OPENPGP, SG_METHOD_SMIME }, 2 },
	{ { SG_METHOD_SMIME, SG_METHOD_OPENPGP }, 2 },
	{ { SG_METHOD_SMIME }, 1 },
	{ { SG_METHOD_OPENPGP }, 1 },
};
static const char *const mlist_name[] = {
	"[openpgp, smime]", "[smime, openpgp]", "[smime]", "[openpgp]",
};

/* The sender's signing keys: none, one method, both, or keys the client
 * may not use (it does not own the sender address). */
enum signer { S_NONE, S_PGP, S_SMIME, S_BOTH, S_DENIED, N_SIGNERS };
static const char *const signer_name[] = {
	"absent", "openpgp", "smime", "both", "not owned",
};

#define P SG_METHOD_OPENPGP
#define S SG_METHOD_SMIME
#define X (-1)
#define RJ SG_MISSING_REJECT
#define TF SG_MISSING_TEMPFAIL
#define SP SG_MISSING_SEND_PLAIN

#define DENIED_WHY "login \"bob\" is neither the address nor its local part"

static void
make_signers(enum signer which, struct sg_signers *s)
{
	memset(s, 0, sizeof(*s));
	s->looked_up = true;
	switch (which) {
	case S_DENIED:
		s->denied = true;
		for (int m = 0; m < SG_MAX_METHODS; m++)
			g_strlcpy(s->why[m], DENIED_WHY, sizeof(s->why[m]));
		/* The keys exist, but must not be used. */
		return;
	case S_BOTH:
	case S_PGP:
		s->have[P] = true;
		g_strlcpy(s->fpr[P], "PGPSIGNER", sizeof(s->fpr[P]));
		if (which == S_PGP)
			break;
		/* fall through */
	case S_SMIME:
		s->have[S] = true;
		g_strlcpy(s->fpr[S], "SMIMESIGNER", sizeof(s->fpr[S]));
		break;
	default:
		break;
	}
}

/* The keystore as the planner's lookups see it: which keys the
 * recipient has, and the methods asked for, in order. */
static enum keys fake_keys;
static GString *fake_calls;

static int
fake_find(int method, const char *addr, char *fpr, struct sg_err *err)
{
	bool have = fake_keys == K_BOTH ||
	    fake_keys == (method == P ? K_PGP : K_SMIME);

	g_string_append(fake_calls, method == P ? "p" : "s");
	if (strcmp(addr, "fail@p.example") == 0) {
		g_strlcpy(err->msg, "keystore unreadable", sizeof(err->msg));
		return SG_EIO;
	}
	if (!have) {
		g_strlcpy(err->msg, "none", sizeof(err->msg));
		return SG_ENOKEY;
	}
	g_strlcpy(fpr, method == P ? "PGPKEY" : "SMIMECERT", SG_FPR_MAX);
	return SG_OK;
}

static int
fake_find_pgp(const struct sg_keystore *ks, const char *addr, char *fpr,
	      struct sg_err *err)
{
	(void)ks;
	return fake_find(P, addr, fpr, err);
}

static int
fake_find_smime(const struct sg_keystore *ks, const char *addr, char *fpr,
		struct sg_err *err)
{
	(void)ks;
	return fake_find(S, addr, fpr, err);
}

static sg_find_key_fn *const fake_finders[SG_MAX_METHODS] = {
	[SG_METHOD_OPENPGP] = fake_find_pgp,
	[SG_METHOD_SMIME] = fake_find_smime,
};

/* The class the recipient gets at RCPT time (sg_classify_external). */
static enum sg_class
class_for(enum keys k, enum mlist ml)
{
	enum sg_class cls = SG_CLASS_NONE;

	fake_keys = k;
	g_string_truncate(fake_calls, 0);
	assert_int_equal(sg_classify_external(NULL, "carol@p.example",
	    &mlists[ml], fake_finders, &cls, NULL, NULL), SG_OK);
	return cls;
}

/* README "Methods": a recipient gets the first method of the list for
 * which the keystore has a usable key; the others are not looked up. */
static void
test_classify(void **state)
{
	static const struct {
		enum keys keys;
		enum mlist ml;
		enum sg_class cls;
		const char *fpr, *why, *calls;
	} rows[] = {
		{ K_NONE, M_PS, SG_CLASS_PLAIN, "", "openpgp: none; smime: none", "ps" },
		{ K_NONE, M_SP, SG_CLASS_PLAIN, "", "smime: none; openpgp: none", "sp" },
		{ K_NONE, M_S, SG_CLASS_PLAIN, "", "smime: none", "s" },
		{ K_NONE, M_P, SG_CLASS_PLAIN, "", "openpgp: none", "p" },
		{ K_PGP, M_PS, SG_CLASS_OPENPGP, "PGPKEY", "OpenPGP key PGPKEY", "p" },
		{ K_PGP, M_SP, SG_CLASS_OPENPGP, "PGPKEY", "OpenPGP key PGPKEY", "sp" },
		{ K_PGP, M_S, SG_CLASS_PLAIN, "", "smime: none", "s" },
		{ K_PGP, M_P, SG_CLASS_OPENPGP, "PGPKEY", "OpenPGP key PGPKEY", "p" },
		{ K_SMIME, M_PS, SG_CLASS_SMIME, "SMIMECERT",
		  "S/MIME certificate SMIMECERT", "ps" },
		{ K_SMIME, M_SP, SG_CLASS_SMIME, "SMIMECERT",
		  "S/MIME certificate SMIMECERT", "s" },
		{ K_SMIME, M_S, SG_CLASS_SMIME, "SMIMECERT",
		  "S/MIME certificate SMIMECERT", "s" },
		{ K_SMIME, M_P, SG_CLASS_PLAIN, "", "openpgp: none", "p" },
		{ K_BOTH, M_PS, SG_CLASS_OPENPGP, "PGPKEY", "OpenPGP key PGPKEY", "p" },
		{ K_BOTH, M_SP, SG_CLASS_SMIME, "SMIMECERT",
		  "S/MIME certificate SMIMECERT", "s" },
		{ K_BOTH, M_S, SG_CLASS_SMIME, "SMIMECERT",
		  "S/MIME certificate SMIMECERT", "s" },
		{ K_BOTH, M_P, SG_CLASS_OPENPGP, "PGPKEY", "OpenPGP key PGPKEY", "p" },
	};
	static const struct sg_methods none = { { 0 }, 0 };
	enum sg_class cls;
	char *why = NULL;

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
		char fpr[SG_FPR_MAX] = "";

		cls = SG_CLASS_NONE;
		fake_keys = rows[i].keys;
		g_string_truncate(fake_calls, 0);
		assert_int_equal(sg_classify_external(NULL, "carol@p.example",
		    &mlists[rows[i].ml], fake_finders, &cls, fpr, &why), SG_OK);
		if (cls != rows[i].cls || strcmp(fpr, rows[i].fpr) != 0 ||
		    strcmp(why, rows[i].why) != 0 ||
		    strcmp(fake_calls->str, rows[i].calls) != 0)
			fail_msg("keys %s, %s: got %s \"%s\" (%s) after %s",
			    keys_name[rows[i].keys], mlist_name[rows[i].ml],
			    sg_class_name(cls), fpr, why, fake_calls->str);
		g_free(why);
		why = NULL;
	}
	/* No method: plain. */
	assert_int_equal(sg_classify_external(NULL, "carol@p.example", &none,
	    fake_finders, &cls, NULL, &why), SG_OK);
	assert_int_equal(cls, SG_CLASS_PLAIN);
	assert_string_equal(why, "no method allowed");
	g_free(why);
	why = NULL;
	/* A failing lookup is an error (the pipeline tempfails), not a
	 * missing key. */
	fake_keys = K_BOTH;
	assert_int_equal(sg_classify_external(NULL, "fail@p.example",
	    &mlists[M_PS], fake_finders, &cls, NULL, &why), SG_EIO);
	assert_string_equal(why, "keystore unreadable");
	g_free(why);
}

static void
make_decision(int action, const struct sg_methods *methods, int miss,
	      struct sg_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->rule = "r";
	d->action = action;
	d->methods = methods;
	d->on_missing_key = miss;
}

struct rcpt_row {
	int action;
	enum keys keys;
	enum mlist ml;
	int miss;
	enum signer signer;
	/* expected */
	enum sg_outcome outcome;
	int enc, sign;
	const char *missing;
};

#define O_PLAIN SG_OUTCOME_PLAIN
#define O_SIGN SG_OUTCOME_SIGN
#define O_ENC SG_OUTCOME_ENCRYPT
#define O_SE SG_OUTCOME_SIGN_ENCRYPT
#define O_REJ SG_OUTCOME_REJECT
#define O_TF SG_OUTCOME_TEMPFAIL
#define A_NONE SG_ACTION_NONE
#define A_SIGN SG_ACTION_SIGN
#define A_ENC SG_ACTION_ENCRYPT
#define A_SE SG_ACTION_SIGN_ENCRYPT
#define A_EIK SG_ACTION_ENCRYPT_IF_KEY

static const struct rcpt_row rcpt_rows[] = {
	/* none: plain whatever the keys. */
	{ A_NONE, K_BOTH, M_PS, RJ, S_BOTH,	O_PLAIN, X, X, NULL },
	{ A_NONE, K_NONE, M_PS, RJ, S_NONE,	O_PLAIN, X, X, NULL },
	{ A_NONE, K_PGP, M_P, TF, S_DENIED,	O_PLAIN, X, X, NULL },
	{ A_NONE, K_SMIME, M_S, SP, S_SMIME,	O_PLAIN, X, X, NULL },
	/* encrypt-if-key: the first listed method with a key, else plain;
	 * on_missing_key plays no part and it never signs. */
	{ A_EIK, K_NONE, M_PS, RJ, S_NONE,	O_PLAIN, X, X, NULL },
	{ A_EIK, K_NONE, M_SP, TF, S_BOTH,	O_PLAIN, X, X, NULL },
	{ A_EIK, K_PGP, M_PS, RJ, S_NONE,	O_ENC, P, X, NULL },
	{ A_EIK, K_SMIME, M_PS, RJ, S_NONE,	O_ENC, S, X, NULL },
	{ A_EIK, K_BOTH, M_PS, RJ, S_BOTH,	O_ENC, P, X, NULL },
	{ A_EIK, K_BOTH, M_SP, RJ, S_BOTH,	O_ENC, S, X, NULL },
	{ A_EIK, K_BOTH, M_S, TF, S_NONE,	O_ENC, S, X, NULL },
	{ A_EIK, K_BOTH, M_P, SP, S_NONE,	O_ENC, P, X, NULL },
	{ A_EIK, K_PGP, M_S, RJ, S_NONE,	O_PLAIN, X, X, NULL },
	{ A_EIK, K_SMIME, M_P, TF, S_PGP,	O_PLAIN, X, X, NULL },
	/* encrypt: a key of an allowed method, else on_missing_key. */
	{ A_ENC, K_NONE, M_PS, RJ, S_NONE,	O_REJ, X, X, "key" },
	{ A_ENC, K_NONE, M_PS, TF, S_NONE,	O_TF, X, X, "key" },
	{ A_ENC, K_NONE, M_PS, SP, S_NONE,	O_PLAIN, X, X, "key" },
	{ A_ENC, K_NONE, M_P, TF, S_BOTH,	O_TF, X, X, "key" },
	{ A_ENC, K_PGP, M_PS, RJ, S_NONE,	O_ENC, P, X, NULL },
	{ A_ENC, K_PGP, M_SP, RJ, S_NONE,	O_ENC, P, X, NULL },
	{ A_ENC, K_PGP, M_P, RJ, S_NONE,	O_ENC, P, X, NULL },
	{ A_ENC, K_PGP, M_S, RJ, S_NONE,	O_REJ, X, X, "key" },
	{ A_ENC, K_PGP, M_S, TF, S_NONE,	O_TF, X, X, "key" },
	{ A_ENC, K_PGP, M_S, SP, S_NONE,	O_PLAIN, X, X, "key" },
	{ A_ENC, K_SMIME, M_PS, RJ, S_NONE,	O_ENC, S, X, NULL },
	{ A_ENC, K_SMIME, M_SP, TF, S_NONE,	O_ENC, S, X, NULL },
	{ A_ENC, K_SMIME, M_S, RJ, S_NONE,	O_ENC, S, X, NULL },
	{ A_ENC, K_SMIME, M_P, RJ, S_NONE,	O_REJ, X, X, "key" },
	{ A_ENC, K_SMIME, M_P, SP, S_NONE,	O_PLAIN, X, X, "key" },
	{ A_ENC, K_BOTH, M_PS, RJ, S_NONE,	O_ENC, P, X, NULL },
	{ A_ENC, K_BOTH, M_SP, RJ, S_NONE,	O_ENC, S, X, NULL },
	{ A_ENC, K_BOTH, M_S, RJ, S_NONE,	O_ENC, S, X, NULL },
	{ A_ENC, K_BOTH, M_P, RJ, S_NONE,	O_ENC, P, X, NULL },
	{ A_ENC, K_BOTH, M_SP, RJ, S_BOTH,	O_ENC, S, X, NULL },
	{ A_ENC, K_BOTH, M_PS, TF, S_DENIED,	O_ENC, P, X, NULL },
	/* sign: the class's own method when the sender can sign with it,
	 * else the first listed one it can; never encrypts. */
	{ A_SIGN, K_NONE, M_PS, RJ, S_PGP,	O_SIGN, X, P, NULL },
	{ A_SIGN, K_NONE, M_PS, RJ, S_SMIME,	O_SIGN, X, S, NULL },
	{ A_SIGN, K_NONE, M_PS, RJ, S_BOTH,	O_SIGN, X, P, NULL },
	{ A_SIGN, K_NONE, M_SP, RJ, S_BOTH,	O_SIGN, X, S, NULL },
	{ A_SIGN, K_NONE, M_PS, RJ, S_NONE,	O_REJ, X, X, "signing key" },
	{ A_SIGN, K_NONE, M_PS, TF, S_NONE,	O_TF, X, X, "signing key" },
	{ A_SIGN, K_NONE, M_PS, SP, S_NONE,	O_PLAIN, X, X, "signing key" },
	{ A_SIGN, K_NONE, M_PS, RJ, S_DENIED,	O_REJ, X, X, "signing key" },
	{ A_SIGN, K_BOTH, M_PS, RJ, S_DENIED,	O_REJ, X, X, "signing key" },
	{ A_SIGN, K_BOTH, M_PS, TF, S_DENIED,	O_TF, X, X, "signing key" },
	{ A_SIGN, K_BOTH, M_PS, SP, S_DENIED,	O_PLAIN, X, X, "signing key" },
	{ A_SIGN, K_SMIME, M_PS, RJ, S_BOTH,	O_SIGN, X, S, NULL },
	{ A_SIGN, K_PGP, M_SP, RJ, S_BOTH,	O_SIGN, X, P, NULL },
	{ A_SIGN, K_SMIME, M_PS, RJ, S_PGP,	O_SIGN, X, P, NULL },
	{ A_SIGN, K_BOTH, M_S, RJ, S_SMIME,	O_SIGN, X, S, NULL },
	{ A_SIGN, K_PGP, M_S, RJ, S_BOTH,	O_SIGN, X, S, NULL },
	{ A_SIGN, K_NONE, M_S, RJ, S_PGP,	O_REJ, X, X, "signing key" },
	{ A_SIGN, K_NONE, M_P, TF, S_SMIME,	O_TF, X, X, "signing key" },
	{ A_SIGN, K_SMIME, M_P, RJ, S_SMIME,	O_REJ, X, X, "signing key" },
	/* sign-encrypt: both with the recipient's method; else
	 * on_missing_key, and send-plain drops only what cannot be done. */
	{ A_SE, K_PGP, M_PS, RJ, S_PGP,		O_SE, P, P, NULL },
	{ A_SE, K_SMIME, M_PS, RJ, S_SMIME,	O_SE, S, S, NULL },
	{ A_SE, K_BOTH, M_PS, RJ, S_BOTH,	O_SE, P, P, NULL },
	{ A_SE, K_BOTH, M_SP, RJ, S_BOTH,	O_SE, S, S, NULL },
	{ A_SE, K_BOTH, M_S, RJ, S_BOTH,	O_SE, S, S, NULL },
	{ A_SE, K_BOTH, M_P, TF, S_BOTH,	O_SE, P, P, NULL },
	{ A_SE, K_PGP, M_PS, RJ, S_SMIME,	O_REJ, X, X, "signing key" },
	{ A_SE, K_PGP, M_PS, TF, S_SMIME,	O_TF, X, X, "signing key" },
	{ A_SE, K_PGP, M_PS, SP, S_SMIME,	O_ENC, P, X, "signing key" },
	{ A_SE, K_SMIME, M_SP, RJ, S_NONE,	O_REJ, X, X, "signing key" },
	{ A_SE, K_SMIME, M_SP, SP, S_NONE,	O_ENC, S, X, "signing key" },
	{ A_SE, K_SMIME, M_SP, SP, S_DENIED,	O_ENC, S, X, "signing key" },
	{ A_SE, K_PGP, M_PS, RJ, S_DENIED,	O_REJ, X, X, "signing key" },
	{ A_SE, K_BOTH, M_SP, TF, S_DENIED,	O_TF, X, X, "signing key" },
	{ A_SE, K_NONE, M_PS, RJ, S_BOTH,	O_REJ, X, X, "key" },
	{ A_SE, K_NONE, M_PS, RJ, S_NONE,	O_REJ, X, X, "key" },
	{ A_SE, K_NONE, M_PS, TF, S_BOTH,	O_TF, X, X, "key" },
	{ A_SE, K_NONE, M_PS, SP, S_BOTH,	O_SIGN, X, P, "key" },
	{ A_SE, K_NONE, M_SP, SP, S_BOTH,	O_SIGN, X, S, "key" },
	{ A_SE, K_NONE, M_PS, SP, S_NONE,	O_PLAIN, X, X, "key" },
	{ A_SE, K_NONE, M_PS, SP, S_DENIED,	O_PLAIN, X, X, "key" },
	{ A_SE, K_PGP, M_S, RJ, S_BOTH,		O_REJ, X, X, "key" },
	{ A_SE, K_PGP, M_S, SP, S_BOTH,		O_SIGN, X, S, "key" },
	{ A_SE, K_SMIME, M_P, TF, S_SMIME,	O_TF, X, X, "key" },
	{ A_SE, K_SMIME, M_P, SP, S_SMIME,	O_PLAIN, X, X, "key" },
};

static void
check_rcpt(const char *what, const struct sg_rcpt_plan *got,
	   enum sg_outcome outcome, int enc, int sign, const char *missing)
{
	if (got->outcome != outcome || got->encrypt_method != enc ||
	    got->sign_method != sign || g_strcmp0(got->missing, missing) != 0)
		fail_msg("%s: got %s enc=%d sign=%d missing=%s, want %s enc=%d "
		    "sign=%d missing=%s", what, sg_outcome_name(got->outcome),
		    got->encrypt_method, got->sign_method,
		    got->missing ? got->missing : "-", sg_outcome_name(outcome),
		    enc, sign, missing ? missing : "-");
}

static void
test_recipient_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(rcpt_rows); i++) {
		const struct rcpt_row *r = &rcpt_rows[i];
		struct sg_decision d;
		struct sg_signers s;
		struct sg_rcpt_plan got;
		char what[200];

		make_decision(r->action, &mlists[r->ml], r->miss, &d);
		make_signers(r->signer, &s);
		sg_plan_recipient(&d, class_for(r->keys, r->ml), &s, &got);
		g_snprintf(what, sizeof(what), "row %zu (%s, keys %s, %s, %s, "
		    "signer %s)", i, sg_action_name(r->action),
		    keys_name[r->keys], mlist_name[r->ml],
		    sg_on_missing_name(r->miss), signer_name[r->signer]);
		check_rcpt(what, &got, r->outcome, r->enc, r->sign, r->missing);
	}
}

/* Decisions whose methods are not those that classified the recipient at
 * RCPT time (a rule with content conditions), and classes the planner is
 * not given by the pipeline (internal and pass recipients never reach
 * it): only the class's key counts, and a class without one is keyless. */
static void
test_recipient_class_rows(void **state)
{
	static const struct {
		enum sg_class cls;
		int action;
		enum mlist ml;
		int miss;
		enum signer signer;
		enum sg_outcome outcome;
		int enc, sign;
		const char *missing;
	} rows[] = {
		{ SG_CLASS_OPENPGP, A_ENC, M_S, RJ, S_NONE, O_REJ, X, X, "key" },
		{ SG_CLASS_OPENPGP, A_ENC, M_S, SP, S_NONE, O_PLAIN, X, X, "key" },
		{ SG_CLASS_OPENPGP, A_EIK, M_S, RJ, S_NONE, O_PLAIN, X, X, NULL },
		{ SG_CLASS_SMIME, A_SE, M_P, SP, S_BOTH, O_SIGN, X, P, "key" },
		{ SG_CLASS_SMIME, A_SE, M_P, RJ, S_BOTH, O_REJ, X, X, "key" },
		{ SG_CLASS_INTERNAL, A_ENC, M_PS, RJ, S_BOTH, O_REJ, X, X, "key" },
		{ SG_CLASS_INTERNAL, A_EIK, M_PS, RJ, S_BOTH, O_PLAIN, X, X, NULL },
		{ SG_CLASS_INTERNAL, A_SIGN, M_SP, RJ, S_BOTH, O_SIGN, X, S, NULL },
		{ SG_CLASS_PASS, A_ENC, M_PS, TF, S_NONE, O_TF, X, X, "key" },
		{ SG_CLASS_PASS, A_SE, M_PS, RJ, S_BOTH, O_REJ, X, X, "key" },
		{ SG_CLASS_NONE, A_SE, M_SP, TF, S_BOTH, O_TF, X, X, "key" },
	};

	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
		struct sg_decision d;
		struct sg_signers s;
		struct sg_rcpt_plan got;
		char what[120];

		make_decision(rows[i].action, &mlists[rows[i].ml], rows[i].miss, &d);
		make_signers(rows[i].signer, &s);
		sg_plan_recipient(&d, rows[i].cls, &s, &got);
		g_snprintf(what, sizeof(what), "class row %zu (%s, %s)", i,
		    sg_class_name(rows[i].cls), sg_action_name(rows[i].action));
		check_rcpt(what, &got, rows[i].outcome, rows[i].enc,
		    rows[i].sign, rows[i].missing);
	}
}

/* Every combination of action, keys, methods, on_missing_key, signer and
 * class: the rules that hold for all of them. */
static void
test_recipient_all_combinations(void **state)
{
	static const int actions[] = { A_NONE, A_SIGN, A_ENC, A_SE, A_EIK };
	static const enum sg_class odd[] = {
		SG_CLASS_NONE, SG_CLASS_PASS, SG_CLASS_INTERNAL,
	};
	unsigned n = 0;

	(void)state;
	for (size_t a = 0; a < G_N_ELEMENTS(actions); a++)
	for (int k = 0; k < N_KEYS + (int)G_N_ELEMENTS(odd); k++)
	for (int ml = 0; ml < N_MLISTS; ml++)
	for (int miss = RJ; miss <= SP; miss++)
	for (int sg = 0; sg < N_SIGNERS; sg++) {
		int action = actions[a];
		enum sg_class cls = k < N_KEYS ? class_for((enum keys)k,
		    (enum mlist)ml) : odd[k - N_KEYS];
		int own = sg_class_method(cls);
		bool has_key = own >= 0;
		bool enc_needed = action == A_ENC || action == A_SE;
		bool sign_needed = action == A_SIGN || action == A_SE;
		bool encrypts, signs, refused;
		struct sg_decision d;
		struct sg_signers s;
		struct sg_rcpt_plan got;
		char what[200];

		make_decision(action, &mlists[ml], miss, &d);
		make_signers((enum signer)sg, &s);
		sg_plan_recipient(&d, cls, &s, &got);
		n++;
		g_snprintf(what, sizeof(what), "%s, class %s, %s, %s, signer "
		    "%s: %s", sg_action_name(action), sg_class_name(cls),
		    mlist_name[ml], sg_on_missing_name(miss), signer_name[sg],
		    sg_outcome_name(got.outcome));
		encrypts = got.outcome == O_ENC || got.outcome == O_SE;
		signs = got.outcome == O_SIGN || got.outcome == O_SE;
		refused = got.outcome == O_REJ || got.outcome == O_TF;
		if (got.outcome == SG_OUTCOME_PASS)
			fail_msg("%s: pass is not a plan", what);
		/* Methods named match the outcome. */
		if (encrypts != (got.encrypt_method >= 0) ||
		    signs != (got.sign_method >= 0))
			fail_msg("%s: methods enc=%d sign=%d", what,
			    got.encrypt_method, got.sign_method);
		/* Encryption only with the recipient's own key, of a listed
		 * method; never for none or sign. */
		if (encrypts && (!has_key || got.encrypt_method != own ||
		    !sg_policy_allows_method(&mlists[ml], own) ||
		    action == A_NONE || action == A_SIGN))
			fail_msg("%s: encrypts with %d", what, got.encrypt_method);
		/* Signing only with a key the sender has and may use, of a
		 * listed method, and only when the action signs. */
		if (signs && (!sign_needed || s.denied ||
		    !s.have[got.sign_method] ||
		    !sg_policy_allows_method(&mlists[ml], got.sign_method)))
			fail_msg("%s: signs with %d", what, got.sign_method);
		/* Refusals only for mandatory actions, exactly as
		 * on_missing_key says. */
		if (refused && (!(enc_needed || sign_needed) ||
		    got.outcome != (miss == RJ ? O_REJ : O_TF)))
			fail_msg("%s: refusal", what);
		/* No plaintext where the policy requires encryption, and no
		 * unsigned mail where it requires a signature, unless
		 * on_missing_key says send-plain -- and then "missing" says
		 * what was dropped. */
		if (enc_needed && !encrypts && !refused &&
		    (miss != SP || g_strcmp0(got.missing, "key") != 0))
			fail_msg("%s: plaintext under a mandatory rule", what);
		if (sign_needed && !signs && !refused &&
		    (miss != SP || got.missing == NULL))
			fail_msg("%s: unsigned under a mandatory rule", what);
		/* A usable key is used: encrypt-if-key, encrypt and
		 * sign-encrypt with a key of a listed method are never
		 * plain. */
		if ((action == A_EIK || action == A_ENC) &&
		    sg_class_has_key(cls, &mlists[ml]) && got.outcome != O_ENC)
			fail_msg("%s: key not used", what);
		if (action == A_EIK && !sg_class_has_key(cls, &mlists[ml]) &&
		    got.outcome != O_PLAIN)
			fail_msg("%s: encrypt-if-key without a key", what);
		if (action == A_NONE && got.outcome != O_PLAIN)
			fail_msg("%s: none", what);
		/* send-plain never turns into a refusal, the others always
		 * refuse rather than drop something. */
		if (miss == SP && refused)
			fail_msg("%s: send-plain refused", what);
		if (miss != SP && got.missing != NULL && !refused)
			fail_msg("%s: dropped %s without send-plain", what,
			    got.missing);
	}
	assert_int_equal(n, 5 * 7 * 4 * 3 * 5);
}

/* ---- transactions ---- */

struct trcpt {
	const char *addr;
	int action;
	enum mlist ml;
	int miss;
	const char *rule;            /* NULL: outbound.default */
};

struct trow {
	const char *name;
	enum sg_class cls;
	enum signer signer;
	struct trcpt r[4];
	/* expected */
	const char *rcode;           /* NULL: not refused */
	const char *xcode;
	const char *text;
	bool encrypt, sign;
	int enc, signm;
	const char *signer_fpr;
	bool conflict;
};

#define SENDER "alice@example.com"
#define CONFLICT_TEXT "the policy asks for different protection for the " \
	"recipients of this message; send to them separately"

static const struct trow trows[] = {
	{ "all encrypt, openpgp", SG_CLASS_OPENPGP, S_NONE,
	  { { "a@p.example", A_ENC, M_PS, RJ, "r1" },
	    { "b@p.example", A_EIK, M_PS, RJ, NULL } },
	  NULL, NULL, NULL, true, false, P, X, NULL, false },
	{ "all encrypt, smime", SG_CLASS_SMIME, S_NONE,
	  { { "a@p.example", A_ENC, M_SP, RJ, "r1" },
	    { "b@p.example", A_ENC, M_S, TF, "r2" } },
	  NULL, NULL, NULL, true, false, S, X, NULL, false },
	{ "keyless encrypt-if-key: plain", SG_CLASS_PLAIN, S_BOTH,
	  { { "a@p.example", A_EIK, M_PS, RJ, NULL },
	    { "b@p.example", A_NONE, M_PS, RJ, "r0" } },
	  NULL, NULL, NULL, false, false, X, X, NULL, false },
	{ "keyless, send-plain says so", SG_CLASS_PLAIN, S_NONE,
	  { { "a@p.example", A_ENC, M_PS, SP, "lenient" },
	    { "b@p.example", A_EIK, M_PS, RJ, NULL } },
	  NULL, NULL, NULL, false, false, X, X, NULL, false },
	{ "reject names every keyless recipient", SG_CLASS_PLAIN, S_NONE,
	  { { "a@p.example", A_ENC, M_PS, RJ, "secure" },
	    { "b@p.example", A_EIK, M_PS, RJ, NULL },
	    { "c@p.example", A_ENC, M_PS, RJ, "secure" } },
	  "550", "5.7.1", "encryption required by rule \"secure\"; no usable "
	  "key for: a@p.example, c@p.example", false, false, X, X, NULL, false },
	{ "reject before tempfail", SG_CLASS_PLAIN, S_NONE,
	  { { "a@p.example", A_ENC, M_PS, TF, "slow" },
	    { "b@p.example", A_ENC, M_PS, RJ, "secure" } },
	  "550", "5.7.1", "encryption required by rule \"secure\"; no usable "
	  "key for: b@p.example", false, false, X, X, NULL, false },
	{ "tempfail names every keyless recipient", SG_CLASS_PLAIN, S_NONE,
	  { { "a@p.example", A_ENC, M_PS, TF, NULL },
	    { "b@p.example", A_SE, M_PS, TF, NULL } },
	  "451", "4.7.1", "encryption required by rule \"outbound.default\"; "
	  "no usable key for: a@p.example, b@p.example; try again later",
	  false, false, X, X, NULL, false },
	{ "a mandatory recipient refuses the whole message", SG_CLASS_PLAIN,
	  S_BOTH,
	  { { "a@p.example", A_NONE, M_PS, RJ, "r0" },
	    { "b@p.example", A_EIK, M_PS, RJ, NULL },
	    { "c@p.example", A_SE, M_PS, RJ, "confidential" } },
	  "550", "5.7.1", "encryption required by rule \"confidential\"; no "
	  "usable key for: c@p.example", false, false, X, X, NULL, false },
	/* A content rule asks for S/MIME of a recipient classed OpenPGP. */
	{ "rule's method without a key: reject", SG_CLASS_OPENPGP, S_NONE,
	  { { "a@p.example", A_EIK, M_PS, RJ, NULL },
	    { "b@p.example", A_ENC, M_S, RJ, "partner-smime" } },
	  "550", "5.7.1", "encryption required by rule \"partner-smime\"; no "
	  "usable key for: b@p.example", true, false, P, X, NULL, false },
	{ "send-plain next to encrypted: never one plain body",
	  SG_CLASS_OPENPGP, S_NONE,
	  { { "a@p.example", A_ENC, M_PS, RJ, "r1" },
	    { "b@p.example", A_ENC, M_S, SP, "partner-smime" } },
	  "550", "5.7.1", CONFLICT_TEXT, true, false, P, X, NULL, true },
	{ "encrypt-if-key without the rule's key next to encrypted",
	  SG_CLASS_OPENPGP, S_NONE,
	  { { "a@p.example", A_EIK, M_S, RJ, "smime-only" },
	    { "b@p.example", A_EIK, M_PS, RJ, NULL } },
	  "550", "5.7.1", CONFLICT_TEXT, true, false, P, X, NULL, true },
	{ "sign and encrypt: one signed, encrypted body", SG_CLASS_OPENPGP,
	  S_BOTH,
	  { { "a@p.example", A_SIGN, M_PS, RJ, "signed" },
	    { "b@p.example", A_ENC, M_PS, RJ, "r1" } },
	  NULL, NULL, NULL, true, true, P, P, "PGPSIGNER", false },
	{ "sign-encrypt smime", SG_CLASS_SMIME, S_BOTH,
	  { { "a@p.example", A_SE, M_PS, RJ, "c" },
	    { "b@p.example", A_SE, M_SP, RJ, "c" } },
	  NULL, NULL, NULL, true, true, S, S, "SMIMESIGNER", false },
	/* a is signed under a rule whose method it has no key for: it
	 * would get signed plaintext, b encrypted mail. */
	{ "signed plaintext next to encrypted: conflict", SG_CLASS_SMIME,
	  S_BOTH,
	  { { "a@p.example", A_SIGN, M_P, RJ, "pgp-signed" },
	    { "b@p.example", A_ENC, M_S, RJ, "r1" } },
	  "550", "5.7.1", CONFLICT_TEXT, true, true, S, S, "SMIMESIGNER", true },
	{ "signing method differs, no key to switch to: conflict",
	  SG_CLASS_SMIME, S_PGP,
	  { { "a@p.example", A_SIGN, M_PS, RJ, "signed" },
	    { "b@p.example", A_ENC, M_PS, RJ, "r1" } },
	  "550", "5.7.1", CONFLICT_TEXT, true, true, S, P, "PGPSIGNER", true },
	{ "sender may not sign: reject says why", SG_CLASS_OPENPGP, S_DENIED,
	  { { "a@p.example", A_SE, M_PS, RJ, "confidential" },
	    { "b@p.example", A_ENC, M_PS, RJ, "r1" } },
	  "550", "5.7.1", "signing required by rule \"confidential\"; no "
	  "usable signing key for: a@p.example (sender <" SENDER "> may not "
	  "sign: " DENIED_WHY ")", true, false, P, X, NULL, false },
	{ "no signing key, tempfail", SG_CLASS_OPENPGP, S_NONE,
	  { { "a@p.example", A_SIGN, M_PS, TF, "signed" } },
	  "451", "4.7.1", "signing required by rule \"signed\"; no usable "
	  "signing key for: a@p.example; try again later", false, false, X, X,
	  NULL, false },
	{ "sign-encrypt, send-plain, no signing key: encrypted only",
	  SG_CLASS_OPENPGP, S_DENIED,
	  { { "a@p.example", A_SE, M_PS, SP, "c" },
	    { "b@p.example", A_SE, M_PS, SP, "c" } },
	  NULL, NULL, NULL, true, false, P, X, NULL, false },
	{ "sign-encrypt, send-plain, no key: signed only", SG_CLASS_PLAIN,
	  S_SMIME,
	  { { "a@p.example", A_SE, M_PS, SP, "c" },
	    { "b@p.example", A_EIK, M_PS, RJ, NULL } },
	  NULL, NULL, NULL, false, true, X, S, "SMIMESIGNER", false },
	{ "signers of two methods in one plain body: conflict",
	  SG_CLASS_PLAIN, S_BOTH,
	  { { "a@p.example", A_SIGN, M_P, RJ, "pgp" },
	    { "b@p.example", A_SIGN, M_S, RJ, "smime" } },
	  "550", "5.7.1", CONFLICT_TEXT, false, true, X, S, "SMIMESIGNER",
	  true },
};

static void
run_trow(const struct trow *t, struct sg_plan *plan, struct sg_result *res,
	 GPtrArray *rcpts, struct sg_decision *d)
{
	unsigned n = 0;

	sg_plan_init(plan, SENDER);
	make_signers(t->signer, &plan->signers);
	for (; n < G_N_ELEMENTS(t->r) && t->r[n].addr != NULL; n++) {
		struct sg_rcpt *r = g_new0(struct sg_rcpt, 1);

		r->addr = (char *)t->r[n].addr;
		r->cls = t->cls;
		g_ptr_array_add(rcpts, r);
		make_decision(t->r[n].action, &mlists[t->r[n].ml],
		    t->r[n].miss, &d[n]);
		d[n].rule = t->r[n].rule;
	}
	sg_plan_unite(plan, d, rcpts, t->cls);
	sg_result_init(res);
	sg_plan_refusal(plan, res);
}

static void
test_transaction_rows(void **state)
{
	(void)state;
	for (size_t i = 0; i < G_N_ELEMENTS(trows); i++) {
		const struct trow *t = &trows[i];
		GPtrArray *rcpts = g_ptr_array_new_with_free_func(g_free);
		struct sg_decision d[G_N_ELEMENTS(t->r)];
		struct sg_plan plan;
		struct sg_result res;
		bool refused;

		run_trow(t, &plan, &res, rcpts, d);
		refused = res.verdict != SG_VERDICT_ACCEPT;
		if (refused != (t->rcode != NULL) ||
		    (refused && (strcmp(res.rcode, t->rcode) != 0 ||
		    strcmp(res.xcode, t->xcode) != 0 ||
		    strcmp(res.text, t->text) != 0)))
			fail_msg("%s: got %s %s %s, want %s %s %s", t->name,
			    sg_verdict_name(res.verdict), res.rcode,
			    res.text ? res.text : "", t->rcode ? t->rcode : "accept",
			    t->xcode ? t->xcode : "", t->text ? t->text : "");
		if (res.verdict == SG_VERDICT_REJECT && res.rcode[0] != '5')
			fail_msg("%s: reject with %s", t->name, res.rcode);
		if (res.verdict == SG_VERDICT_TEMPFAIL && res.rcode[0] != '4')
			fail_msg("%s: tempfail with %s", t->name, res.rcode);
		if (plan.encrypt != t->encrypt || plan.sign != t->sign ||
		    plan.encrypt_method != t->enc || plan.sign_method != t->signm ||
		    g_strcmp0(plan.signer_fpr, t->signer_fpr) != 0 ||
		    plan.conflict != t->conflict)
			fail_msg("%s: got encrypt=%d/%d sign=%d/%d signer=%s "
			    "conflict=%d", t->name, plan.encrypt,
			    plan.encrypt_method, plan.sign, plan.sign_method,
			    plan.signer_fpr ? plan.signer_fpr : "-", plan.conflict);
		assert_int_equal(plan.oaep->len, rcpts->len);
		sg_result_clear(&res);
		sg_plan_clear(&plan);
		g_ptr_array_free(rcpts, TRUE);
	}
}

/* Every pair and triple of recipients of every class under every
 * decision: a message that is not refused carries one body, and that
 * body is encrypted when any recipient's policy requires encryption
 * without send-plain, and signed when any requires a signature. */
static void
test_transaction_all_combinations(void **state)
{
	enum { N_DEC = 5 * 4 * 3 };
	static const int actions[] = { A_NONE, A_SIGN, A_ENC, A_SE, A_EIK };
	static const enum sg_class classes[] = {
		SG_CLASS_PLAIN, SG_CLASS_OPENPGP, SG_CLASS_SMIME,
	};
	static const char *const addrs[] = {
		"a@p.example", "b@p.example", "c@p.example",
	};
	unsigned n = 0;

	(void)state;
	for (size_t c = 0; c < G_N_ELEMENTS(classes); c++)
	for (int sg = 0; sg < N_SIGNERS; sg++)
	for (int nr = 2; nr <= 3; nr++)
	for (int combo = 0; combo < (nr == 2 ? N_DEC * N_DEC : N_DEC * N_DEC * N_DEC);
	    combo += nr == 2 ? 1 : 7) {
		GPtrArray *rcpts = g_ptr_array_new();
		struct sg_signers signers;
		struct sg_rcpt rs[3];
		struct sg_decision d[3];
		struct sg_plan plan;
		struct sg_result res;
		bool need_enc = false, need_sign = false, any_refusal = false;
		int rest = combo;

		make_signers((enum signer)sg, &signers);
		for (int i = 0; i < nr; i++) {
			int dec = rest % N_DEC;
			int action = actions[dec / 12];
			int ml = (dec / 3) % 4, miss = dec % 3;
			struct sg_rcpt_plan rp;

			rest /= N_DEC;
			rs[i].addr = (char *)addrs[i];
			rs[i].cls = classes[c];
			rs[i].key_fpr = NULL;
			g_ptr_array_add(rcpts, &rs[i]);
			make_decision(action, &mlists[ml], miss, &d[i]);
			sg_plan_recipient(&d[i], classes[c], &signers, &rp);
			if (rp.outcome == O_REJ || rp.outcome == O_TF)
				any_refusal = true;
			if ((action == A_ENC || action == A_SE) && miss != SP)
				need_enc = true;
			if ((action == A_SIGN || action == A_SE) && miss != SP)
				need_sign = true;
		}
		sg_plan_init(&plan, SENDER);
		make_signers((enum signer)sg, &plan.signers);
		sg_plan_unite(&plan, d, rcpts, classes[c]);
		sg_result_init(&res);
		sg_plan_refusal(&plan, &res);
		n++;
		if (any_refusal && res.verdict == SG_VERDICT_ACCEPT)
			fail_msg("class %s signer %s combo %d: a refused "
			    "recipient, message accepted",
			    sg_class_name(classes[c]), signer_name[sg], combo);
		if (res.verdict == SG_VERDICT_ACCEPT &&
		    ((need_enc && !plan.encrypt) || (need_sign && !plan.sign)))
			fail_msg("class %s signer %s combo %d: accepted with "
			    "encrypt=%d sign=%d", sg_class_name(classes[c]),
			    signer_name[sg], combo, plan.encrypt, plan.sign);
		/* An encrypted body only for recipients that can read it. */
		for (int i = 0; i < nr; i++)
			if (res.verdict == SG_VERDICT_ACCEPT && plan.encrypt &&
			    !sg_class_has_key(classes[c], d[i].methods))
				fail_msg("class %s signer %s combo %d: encrypted "
				    "for %s, who has no key", sg_class_name(
				    classes[c]), signer_name[sg], combo, addrs[i]);
		if (res.verdict == SG_VERDICT_ACCEPT && plan.encrypt &&
		    plan.encrypt_method != sg_class_method(classes[c]))
			fail_msg("combo %d: encrypts with %d", combo,
			    plan.encrypt_method);
		if (res.verdict == SG_VERDICT_ACCEPT && plan.sign &&
		    (plan.signer_fpr == NULL || plan.signers.denied ||
		    !plan.signers.have[plan.sign_method]))
			fail_msg("combo %d: signs without a key", combo);
		if (res.verdict == SG_VERDICT_ACCEPT && plan.encrypt &&
		    plan.sign && plan.sign_method != plan.encrypt_method)
			fail_msg("combo %d: signs and encrypts with different "
			    "methods", combo);
		if (res.verdict != SG_VERDICT_ACCEPT && res.rcode[0] !=
		    (res.verdict == SG_VERDICT_REJECT ? '5' : '4'))
			fail_msg("combo %d: %s %s", combo,
			    sg_verdict_name(res.verdict), res.rcode);
		sg_result_clear(&res);
		sg_plan_clear(&plan);
		g_ptr_array_free(rcpts, TRUE);
	}
	assert_true(n > 10000);
}

/* ---- the pipeline's answers, without a keystore ---- */

static const char pipeline_yaml[] =
	"version: 1\n"
	"gateway: { keystore: s }\n"
	"internal_domains: [example.com]\n"
	"outbound:\n"
	"  default: { action: encrypt-if-key, methods: [openpgp, smime] }\n"
	"  rules:\n"
	"    - name: confidential\n"
	"      when: { header: { name: Sensitivity, matches: \"company-confidential\" } }\n"
	"      action: sign-encrypt\n"
	"    - name: slow\n"
	"      when: { recipient_domain: slow.example }\n"
	"      action: encrypt\n"
	"      on_missing_key: tempfail\n"
	"    - name: lenient\n"
	"      when: { recipient_domain: lenient.example }\n"
	"      action: encrypt\n"
	"      on_missing_key: send-plain\n"
	"    - name: partner-smime\n"
	"      when: { recipient_domain: partner.example }\n"
	"      action: encrypt\n"
	"      methods: [smime]\n";

/* Recipients already classified (as at RCPT time, so that nothing is
 * looked up) go through sg_pipeline_run: every refusal comes before the
 * keystore is needed, and so does a plain delivery. */
static void
test_pipeline_answers(void **state)
{
	static const struct {
		const char *name;
		const char *client_ip, *auth;
		bool confidential;
		struct { const char *addr; enum sg_class cls; } r[3];
		enum sg_verdict verdict;
		const char *rcode, *xcode, *text;
	} rows[] = {
		{ "reject names every keyless recipient", "127.0.0.1", NULL, false,
		  { { "carol@partner.example", SG_CLASS_PLAIN },
		    { "dave@partner.example", SG_CLASS_PLAIN } },
		  SG_VERDICT_REJECT, "550", "5.7.1", "encryption required by rule "
		  "\"partner-smime\"; no usable key for: carol@partner.example, "
		  "dave@partner.example" },
		{ "tempfail", "127.0.0.1", NULL, false,
		  { { "x@slow.example", SG_CLASS_PLAIN } },
		  SG_VERDICT_TEMPFAIL, "451", "4.7.1", "encryption required by "
		  "rule \"slow\"; no usable key for: x@slow.example; try again later" },
		{ "reject before tempfail", "127.0.0.1", NULL, false,
		  { { "x@slow.example", SG_CLASS_PLAIN },
		    { "carol@partner.example", SG_CLASS_PLAIN } },
		  SG_VERDICT_REJECT, "550", "5.7.1", "encryption required by rule "
		  "\"partner-smime\"; no usable key for: carol@partner.example" },
		{ "send-plain and encrypt-if-key without keys: plain",
		  "127.0.0.1", NULL, false,
		  { { "x@lenient.example", SG_CLASS_PLAIN },
		    { "y@other.example", SG_CLASS_PLAIN } },
		  SG_VERDICT_ACCEPT, "", "", NULL },
		{ "another class after the first: 452", "127.0.0.1", NULL, false,
		  { { "carol@partner.example", SG_CLASS_SMIME },
		    { "y@other.example", SG_CLASS_PLAIN } },
		  SG_VERDICT_TEMPFAIL, "452", "4.5.3", "recipient <y@other.example> "
		  "needs a different treatment (plain, not smime); deliver it in a "
		  "separate transaction" },
		{ "internal and external: 452", NULL, "alice", false,
		  { { "bob@example.com", SG_CLASS_INTERNAL },
		    { "y@other.example", SG_CLASS_PLAIN } },
		  SG_VERDICT_TEMPFAIL, "452", "4.5.3", "recipient <y@other.example> "
		  "needs a different treatment (plain, not internal); deliver it in "
		  "a separate transaction" },
		{ "mandatory by content, no key", "127.0.0.1", NULL, true,
		  { { "y@other.example", SG_CLASS_PLAIN } },
		  SG_VERDICT_REJECT, "550", "5.7.1", "encryption required by rule "
		  "\"confidential\"; no usable key for: y@other.example" },
		{ "mandatory signature, client may not sign", "127.0.0.1", NULL, true,
		  { { "carol@other.example", SG_CLASS_OPENPGP } },
		  SG_VERDICT_REJECT, "550", "5.7.1", "signing required by rule "
		  "\"confidential\"; no usable signing key for: carol@other.example "
		  "(sender <alice@example.com> may not sign: client 127.0.0.1 is not "
		  "authenticated (SMTP AUTH) and not in gateway.signing_networks)" },
		{ "mandatory signature, login does not own the sender",
		  "192.0.2.1", "bob", true,
		  { { "carol@other.example", SG_CLASS_SMIME } },
		  SG_VERDICT_REJECT, "550", "5.7.1", "signing required by rule "
		  "\"confidential\"; no usable signing key for: carol@other.example "
		  "(sender <alice@example.com> may not sign: login \"bob\" is "
		  "neither the address nor its local part)" },
		{ "not outbound: untouched", "192.0.2.1", NULL, true,
		  { { "y@other.example", SG_CLASS_NONE } },
		  SG_VERDICT_ACCEPT, "", "", NULL },
	};
	char *dir = g_dir_make_tmp("sgplan.XXXXXX", NULL);
	char *path = g_build_filename(dir, "p.yaml", NULL);
	GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
	struct sg_policy *pol = NULL;

	(void)state;
	assert_true(g_file_set_contents(path, pipeline_yaml, -1, NULL));
	if (sg_policy_load(path, errors, &pol) < 0)
		fail_msg("policy: %s", (char *)g_ptr_array_index(errors, 0));
	for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
		struct sg_msg *msg = NULL;
		struct sg_result res;

		assert_int_equal(sg_msg_new(dir, &msg), 0);
		assert_int_equal(sg_msg_set_sender(msg, "alice@example.com"), 0);
		msg->client_ip = g_strdup(rows[i].client_ip);
		msg->auth_user = g_strdup(rows[i].auth);
		for (size_t j = 0; j < G_N_ELEMENTS(rows[i].r) &&
		    rows[i].r[j].addr != NULL; j++)
			assert_int_equal(sg_msg_add_rcpt(msg, rows[i].r[j].addr,
			    rows[i].r[j].cls, sg_class_method(rows[i].r[j].cls) >= 0
			    ? "FPR" : NULL), 0);
		assert_int_equal(sg_msg_add_header(msg, "From",
		    "alice@example.com"), 0);
		if (rows[i].confidential)
			assert_int_equal(sg_msg_add_header(msg, "Sensitivity",
			    "Company-Confidential"), 0);
		assert_int_equal(sg_msg_end_headers(msg), 0);
		assert_int_equal(sg_msg_add_body(msg, "secret\r\n", 8), 0);
		sg_result_init(&res);
		assert_int_equal(sg_pipeline_run(msg, pol, NULL, NULL, &res), 0);
		if (res.verdict != rows[i].verdict ||
		    strcmp(res.rcode, rows[i].rcode) != 0 ||
		    strcmp(res.xcode, rows[i].xcode) != 0 ||
		    g_strcmp0(res.text, rows[i].text) != 0)
			fail_msg("%s: got %s %s %s %s", rows[i].name,
			    sg_verdict_name(res.verdict), res.rcode, res.xcode,
			    res.text ? res.text : "");
		/* Nothing is changed in a message that is passed on. */
		if (res.verdict == SG_VERDICT_ACCEPT && (res.edits.body != NULL ||
		    res.edits.hdr->len != 0))
			fail_msg("%s: edited", rows[i].name);
		sg_result_clear(&res);
		sg_msg_free(msg);
	}
	sg_policy_unref(pol);
	unlink(path);
	rmdir(dir);
	g_free(path);
	g_free(dir);
	g_ptr_array_free(errors, TRUE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_recipient_rows),
		cmocka_unit_test(test_recipient_class_rows),
		cmocka_unit_test(test_recipient_all_combinations),
		cmocka_unit_test(test_transaction_rows),
		cmocka_unit_test(test_transaction_all_combinations),
		cmocka_unit_test(test_pipeline_answers),
	};

	int rc;

	g_mime_init();
	fake_calls = g_string_new(NULL);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	g_string_free(fake_calls, TRUE);
	g_mime_shutdown();
	return rc;
}
