/*
 * OpenPGP encryption in process with librnp, so that a message starts no
 * gpg process. GPGME keeps the keyring (import, listing, the snapshot's
 * index) and does signing, decryption and every encryption rnp is not
 * used for; gpg is the reference this file must agree with:
 *
 * - the recipients' keys are exported from the keystore through GPGME,
 *   once per key and snapshot, and loaded into rnp contexts that belong
 *   to the snapshot; a context serves one encryption at a time (librnp's
 *   contexts are not safe for threads), idle ones are kept for the next;
 * - each key is encrypted to exactly the subkey the snapshot chose (the
 *   newest usable encryption subkey by gpg's listing); rnp must find that
 *   subkey bound to that key and judge it valid and able to encrypt;
 * - the cipher and the compression are chosen from the recipients'
 *   preferences by gpg's rules (select_algo_from_prefs of GnuPG 2.2),
 *   read from the latest valid self-signature of each user id; only an
 *   AES cipher is used here, anything else goes to gpg;
 * - the output is armored, SEIPD v1 with MDC, never AEAD.
 *
 * Whenever rnp cannot do exactly that for a key, sg_pgp_rnp_encrypt says
 * why before it writes anything, and the message goes to gpg.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <gpgme.h>
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>

#include "keyindex.h"
#include "openpgp_int.h"

/* Idle contexts a snapshot keeps. */
#define IDLE_MAX 8

/* One rnp context and the keys loaded into it. */
struct rnp_slot {
	rnp_ffi_t ffi;
	GHashTable *loaded;     /* primary fingerprints */
};

struct sg_pgp_rnp {
	GMutex lock;
	GPtrArray *idle;        /* struct rnp_slot * */
	GHashTable *exported;   /* primary fingerprint -> GBytes */
};

static void
slot_free(gpointer p)
{
	struct rnp_slot *s = p;

	if (s == NULL)
		return;
	rnp_ffi_destroy(s->ffi);
	g_hash_table_destroy(s->loaded);
	g_free(s);
}

struct sg_pgp_rnp *
sg_pgp_rnp_new(void)
{
	struct sg_pgp_rnp *r = g_new0(struct sg_pgp_rnp, 1);

	g_mutex_init(&r->lock);
	r->idle = g_ptr_array_new_with_free_func(slot_free);
	r->exported = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	    (GDestroyNotify)g_bytes_unref);
	return r;
}

void
sg_pgp_rnp_free(struct sg_pgp_rnp *r)
{
	if (r == NULL)
		return;
	g_ptr_array_free(r->idle, TRUE);
	g_hash_table_destroy(r->exported);
	g_mutex_clear(&r->lock);
	g_free(r);
}

static struct rnp_slot *
slot_take(struct sg_pgp_rnp *r, struct sg_err *err)
{
	struct rnp_slot *s = NULL;
	int fd;

	g_mutex_lock(&r->lock);
	if (r->idle->len > 0)
		s = g_ptr_array_steal_index_fast(r->idle, r->idle->len - 1);
	g_mutex_unlock(&r->lock);
	if (s != NULL)
		return s;
	s = g_new0(struct rnp_slot, 1);
	if (rnp_ffi_create(&s->ffi, "GPG", "GPG") != RNP_SUCCESS) {
		g_free(s);
		sg_err_set(err, SG_ECRYPTO, "cannot create an rnp context");
		return NULL;
	}
	/* rnp's diagnostics would go to stderr; the context closes fd. */
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || rnp_ffi_set_log_fd(s->ffi, fd) != RNP_SUCCESS) {
		if (fd >= 0)
			close(fd);
		rnp_ffi_destroy(s->ffi);
		g_free(s);
		sg_err_set(err, SG_ECRYPTO, "cannot set up an rnp context");
		return NULL;
	}
	s->loaded = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	return s;
}

/* Returns s for the next encryption; a context whose encryption failed
 * is dropped. */
static void
slot_give_back(struct sg_pgp_rnp *r, struct rnp_slot *s, bool ok)
{
	if (s == NULL)
		return;
	g_mutex_lock(&r->lock);
	if (ok && r->idle->len < IDLE_MAX) {
		g_ptr_array_add(r->idle, s);
		s = NULL;
	}
	g_mutex_unlock(&r->lock);
	slot_free(s);
}

/* The public key fpr as gpg exports it (binary), once per snapshot.
 * (transfer full) */
static GBytes *
exported_key(const struct sg_keystore *ks, struct sg_pgp_rnp *r,
	     const char *fpr, struct sg_err *why)
{
	const char *patterns[2] = { fpr, NULL };
	gpgme_ctx_t ctx = NULL;
	gpgme_data_t dh = NULL;
	struct sg_err e = { 0 };
	GBytes *b;
	char *data;
	size_t len = 0;

	g_mutex_lock(&r->lock);
	b = g_hash_table_lookup(r->exported, fpr);
	if (b != NULL)
		g_bytes_ref(b);
	g_mutex_unlock(&r->lock);
	if (b != NULL)
		return b;
	if (sg_pgp_ctx(ks, &ctx, &e) < 0) {
		sg_err_set(why, SG_ENOKEY, "cannot export key %s: %s", fpr, e.msg);
		return NULL;
	}
	if (gpgme_data_new(&dh) || gpgme_op_export_ext(ctx, patterns, 0, dh)) {
		sg_err_set(why, SG_ENOKEY, "cannot export key %s", fpr);
		gpgme_data_release(dh);
		gpgme_release(ctx);
		return NULL;
	}
	gpgme_release(ctx);
	data = gpgme_data_release_and_get_mem(dh, &len);
	if (data == NULL || len == 0) {
		gpgme_free(data);
		sg_err_set(why, SG_ENOKEY, "key %s exported as nothing", fpr);
		return NULL;
	}
	b = g_bytes_new(data, len);
	gpgme_free(data);
	g_mutex_lock(&r->lock);
	g_hash_table_replace(r->exported, g_strdup(fpr), g_bytes_ref(b));
	g_mutex_unlock(&r->lock);
	return b;
}

static int
load_key(const struct sg_keystore *ks, struct sg_pgp_rnp *r,
	 struct rnp_slot *s, const char *fpr, struct sg_err *why)
{
	GBytes *b;
	rnp_input_t in = NULL;
	rnp_result_t ret;
	gsize len;
	const guint8 *data;

	if (g_hash_table_contains(s->loaded, fpr))
		return SG_OK;
	b = exported_key(ks, r, fpr, why);
	if (b == NULL)
		return SG_ENOKEY;
	data = g_bytes_get_data(b, &len);
	ret = rnp_input_from_memory(&in, data, len, false);
	if (ret == RNP_SUCCESS)
		ret = rnp_import_keys(s->ffi, in, RNP_LOAD_SAVE_PUBLIC_KEYS, NULL);
	rnp_input_destroy(in);
	g_bytes_unref(b);
	if (ret != RNP_SUCCESS)
		return sg_err_set(why, SG_ENOKEY, "rnp cannot load key %s (rnp "
		    "error 0x%x)", fpr, (unsigned)ret);
	g_hash_table_add(s->loaded, g_strdup(fpr));
	return SG_OK;
}

/* ---- preferences ---- */

/* A user id's preferences: NULL when its self-signature has none. */
struct prefs {
	GByteArray *sym, *zip;
};

static void
prefs_clear(struct prefs *p)
{
	if (p->sym != NULL)
		g_byte_array_free(p->sym, TRUE);
	if (p->zip != NULL)
		g_byte_array_free(p->zip, TRUE);
	p->sym = p->zip = NULL;
}

/*
 * The algorithm list of the hashed subpacket of type in rnp's JSON dump
 * of one signature (rnp_signature_packet_to_json): an object of the
 * "subpackets" array with "type":TYPE, "hashed":true and "algorithms":
 * [N, ...]. Such an object holds no other object. *out NULL when the
 * signature has no such subpacket; SG_EMALFORMED when the dump is not as
 * expected (the caller then does not use rnp). (transfer full)
 */
static int
json_prefs(const char *json, int type, GByteArray **out)
{
	char key[32];
	const char *p = strstr(json, "\"subpackets\"");

	*out = NULL;
	if (p == NULL)
		return SG_OK;
	g_snprintf(key, sizeof(key), "\"type\":%d,", type);
	while ((p = strstr(p, key)) != NULL) {
		const char *end = strchr(p, '}'), *a;
		GByteArray *list;
		char *stop;

		if (end == NULL)
			return SG_EMALFORMED;
		p += strlen(key);
		a = g_strstr_len(p, end - p, "\"hashed\":true");
		if (a == NULL)
			continue;
		a = g_strstr_len(p, end - p, "\"algorithms\":[");
		if (a == NULL)
			return SG_EMALFORMED;
		a += strlen("\"algorithms\":[");
		list = g_byte_array_new();
		for (;;) {
			guint64 v;

			while (g_ascii_isspace(*a) || *a == ',')
				a++;
			if (*a == ']')
				break;
			if (a >= end || !g_ascii_isdigit(*a)) {
				g_byte_array_free(list, TRUE);
				return SG_EMALFORMED;
			}
			v = g_ascii_strtoull(a, &stop, 10);
			if (v > 255 || list->len >= 255) {
				g_byte_array_free(list, TRUE);
				return SG_EMALFORMED;
			}
			g_byte_array_append(list, (guint8[]){ (guint8)v }, 1);
			a = stop;
		}
		/* gpg reads the first such subpacket. */
		*out = list;
		return SG_OK;
	}
	return SG_OK;
}

static bool
same_list(const GByteArray *a, const GByteArray *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* The latest valid self-signature of uid by the key with key id kid, as
 * rnp judges it; NULL when none. */
static rnp_signature_handle_t
latest_selfsig(rnp_uid_handle_t uid, const char *kid)
{
	rnp_signature_handle_t best = NULL;
	uint32_t best_time = 0;
	size_t n = 0;

	if (rnp_uid_get_signature_count(uid, &n) != RNP_SUCCESS)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		rnp_signature_handle_t sig = NULL;
		char *signer = NULL;
		uint32_t t = 0;
		bool take;

		if (rnp_uid_get_signature_at(uid, i, &sig) != RNP_SUCCESS)
			continue;
		take = rnp_signature_get_keyid(sig, &signer) == RNP_SUCCESS &&
		    signer != NULL && g_ascii_strcasecmp(signer, kid) == 0 &&
		    rnp_signature_is_valid(sig, 0) == RNP_SUCCESS &&
		    rnp_signature_get_creation(sig, &t) == RNP_SUCCESS &&
		    (best == NULL || t >= best_time);
		rnp_buffer_destroy(signer);
		if (take) {
			rnp_signature_handle_destroy(best);
			best = sig;
			best_time = t;
		} else {
			rnp_signature_handle_destroy(sig);
		}
	}
	return best;
}

/*
 * The preferences gpg uses for a key chosen by fingerprint: those of its
 * primary user id. Which user id that is depends on rules rnp does not
 * share (the primary flag, else the latest self-signature), so every
 * valid user id is read and they must agree; SG_ENOKEY (why) otherwise.
 */
static int
key_prefs(rnp_key_handle_t key, const char *fpr, struct prefs *out,
	  struct sg_err *why)
{
	char *kid = NULL;
	size_t n = 0;
	bool any = false;
	int rc = SG_OK;

	memset(out, 0, sizeof(*out));
	if (rnp_key_get_keyid(key, &kid) != RNP_SUCCESS ||
	    rnp_key_get_uid_count(key, &n) != RNP_SUCCESS) {
		rnp_buffer_destroy(kid);
		return sg_err_set(why, SG_ENOKEY, "rnp cannot read key %s", fpr);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		rnp_uid_handle_t uid = NULL;
		rnp_signature_handle_t sig = NULL;
		struct prefs p = { 0 };
		bool valid = false, revoked = true;
		char *json = NULL;

		if (rnp_key_get_uid_handle_at(key, i, &uid) != RNP_SUCCESS)
			continue;
		if (rnp_uid_is_valid(uid, &valid) == RNP_SUCCESS && valid &&
		    rnp_uid_is_revoked(uid, &revoked) == RNP_SUCCESS && !revoked)
			sig = latest_selfsig(uid, kid);
		rnp_uid_handle_destroy(uid);
		if (sig == NULL)
			continue;
		if (rnp_signature_packet_to_json(sig, 0, &json) != RNP_SUCCESS ||
		    json_prefs(json, 11, &p.sym) < 0 ||
		    json_prefs(json, 22, &p.zip) < 0)
			rc = sg_err_set(why, SG_ENOKEY, "rnp cannot read the "
			    "preferences of key %s", fpr);
		else if (any && (!same_list(p.sym, out->sym) ||
		    !same_list(p.zip, out->zip)))
			rc = sg_err_set(why, SG_ENOKEY, "the user ids of key %s "
			    "state different preferences", fpr);
		else if (!any) {
			*out = p;
			p.sym = p.zip = NULL;
			any = true;
		}
		prefs_clear(&p);
		rnp_buffer_destroy(json);
		rnp_signature_handle_destroy(sig);
	}
	rnp_buffer_destroy(kid);
	if (rc == 0 && !any)
		rc = sg_err_set(why, SG_ENOKEY, "rnp finds no valid user id on "
		    "key %s", fpr);
	if (rc < 0)
		prefs_clear(out);
	return rc;
}

enum { PREF_SYM, PREF_ZIP };

/* Algorithms gpg 2.2 offers (libgcrypt's ciphers of OpenPGP, and
 * uncompressed, ZIP, ZLIB, BZIP2). */
static bool
gpg_has(int type, int algo)
{
	if (type == PREF_ZIP)
		return algo >= 0 && algo <= 3;
	return (algo >= 1 && algo <= 4) || (algo >= 7 && algo <= 13);
}

/*
 * GnuPG 2.2's select_algo_from_prefs without a request or personal
 * preferences: each recipient's list ranks its algorithms 1, 2, ...
 * (3DES, or for compression "uncompressed", added at its end when
 * missing; no compression list counts as ZIP, uncompressed), only
 * algorithms every recipient lists are candidates, and the lowest sum of
 * ranks wins, the lower number on a tie. -1 when none.
 */
int
sg_pgp_select_algo(const GByteArray *const *lists, size_t n, int type)
{
	unsigned scores[256] = { 0 };
	bool ok[256];
	const int implicit = type == PREF_SYM ? 2 : 0;
	int result = -1;
	unsigned best = ~0u;

	if (n == 0)
		return -1;
	memset(ok, 1, sizeof(ok));
	for (size_t r = 0; r < n; r++) {
		bool mask[256] = { false };
		unsigned rank = 1;
		bool seen_implicit = false;

		if (lists[r] != NULL) {
			for (guint i = 0; i < lists[r]->len; i++) {
				int v = lists[r]->data[i];

				scores[v] += rank++;
				mask[v] = true;
				seen_implicit |= v == implicit;
			}
		}
		if (rank == 1 && type == PREF_ZIP) {
			scores[1] = 1;
			scores[0] = 2;
			mask[0] = mask[1] = true;
			seen_implicit = true;
		}
		if (!seen_implicit) {
			scores[implicit] += rank;
			mask[implicit] = true;
		}
		for (int i = 0; i < 256; i++)
			ok[i] &= mask[i];
	}
	for (int i = 0; i < 256; i++)
		if (scores[i] != 0 && scores[i] < best && ok[i] &&
		    gpg_has(type, i)) {
			best = scores[i];
			result = i;
		}
	return result;
}

static const char *
cipher_name(int algo)
{
	switch (algo) {
	case 7: return "AES128";
	case 8: return "AES192";
	case 9: return "AES256";
	default: return NULL;
	}
}

static const char *
zip_name(int algo)
{
	switch (algo) {
	case 0: return "Uncompressed";
	case 1: return "ZIP";
	case 2: return "ZLIB";
	case 3: return "BZip2";
	default: return NULL;
	}
}

/* ---- the recipients ---- */

static bool
key_flag(rnp_result_t (*fn)(rnp_key_handle_t, bool *), rnp_key_handle_t k,
	 bool want)
{
	bool v = !want;

	return fn(k, &v) == RNP_SUCCESS && v == want;
}

/* The subkey the snapshot chose for the key fpr, checked with rnp, and
 * the key's preferences. */
static int
recipient(const struct sg_keystore *ks, struct rnp_slot *s, const char *fpr,
	  rnp_key_handle_t *out, struct prefs *prefs, struct sg_err *why)
{
	char sub[SG_FPR_MAX];
	rnp_key_handle_t k = NULL, primary = NULL;
	char *pfpr = NULL, *alg = NULL, *curve = NULL;
	bool allowed = false, supported = false;
	int rc;

	if (sg_keyindex_pgp_encryption_subkey(ks->index, fpr, sub) < 0)
		return sg_err_set(why, SG_ENOKEY, "the snapshot names no "
		    "encryption subkey of key %s", fpr);
	if (rnp_locate_key(s->ffi, "fingerprint", sub, &k) != RNP_SUCCESS ||
	    k == NULL)
		return sg_err_set(why, SG_ENOKEY, "rnp did not load subkey %s of "
		    "key %s", sub, fpr);
	rc = sg_err_set(why, SG_ENOKEY, "rnp judges subkey %s of key %s "
	    "unusable for encryption", sub, fpr);
	if (rnp_key_get_primary_fprint(k, &pfpr) != RNP_SUCCESS || pfpr == NULL ||
	    g_ascii_strcasecmp(pfpr, fpr) != 0 ||
	    rnp_locate_key(s->ffi, "fingerprint", fpr, &primary) != RNP_SUCCESS ||
	    primary == NULL)
		goto out;
	if (!key_flag(rnp_key_is_valid, k, true) ||
	    !key_flag(rnp_key_is_valid, primary, true) ||
	    !key_flag(rnp_key_is_expired, k, false) ||
	    !key_flag(rnp_key_is_revoked, k, false) ||
	    !key_flag(rnp_key_is_revoked, primary, false) ||
	    rnp_key_allows_usage(k, "encrypt", &allowed) != RNP_SUCCESS ||
	    !allowed)
		goto out;
	if (rnp_key_get_alg(k, &alg) != RNP_SUCCESS || alg == NULL)
		goto out;
	if (strcmp(alg, "ECDH") == 0)
		supported = rnp_key_get_curve(k, &curve) == RNP_SUCCESS &&
		    curve != NULL && rnp_supports_feature(RNP_FEATURE_CURVE,
		    curve, &supported) == RNP_SUCCESS && supported;
	else
		supported = strcmp(alg, "RSA") == 0 ||
		    strcmp(alg, "ELGAMAL") == 0;
	if (!supported) {
		rc = sg_err_set(why, SG_ENOKEY, "rnp does not encrypt to "
		    "subkey %s (%s%s%s) of key %s", sub, alg, curve ? " " : "",
		    curve ? curve : "", fpr);
		goto out;
	}
	rc = key_prefs(primary, fpr, prefs, why);
out:
	rnp_buffer_destroy(pfpr);
	rnp_buffer_destroy(alg);
	rnp_buffer_destroy(curve);
	rnp_key_handle_destroy(primary);
	if (rc < 0) {
		rnp_key_handle_destroy(k);
		return rc;
	}
	*out = k;
	return SG_OK;
}

/* ---- streaming ---- */

static bool
cb_read(void *app_ctx, void *buf, size_t len, size_t *nread)
{
	struct sg_reader *r = app_ctx;

	return r->read(r->ctx, buf, len, nread) == 0;
}

/* The output and whether a write to it failed: rnp 0.16 drops the
 * output after a refused write and still reports success. */
struct sink {
	struct sg_writer *w;
	bool failed;
};

static bool
cb_write(void *app_ctx, const void *buf, size_t len)
{
	struct sink *k = app_ctx;

	if (!k->failed && k->w->write(k->w->ctx, buf, len) < 0)
		k->failed = true;
	return !k->failed;
}

struct plan {
	rnp_key_handle_t *keys;
	size_t n;
	const char *cipher, *zip;
};

static int
run(struct rnp_slot *s, const struct plan *p, struct sg_reader *in,
    struct sg_writer *out, struct sg_err *err)
{
	rnp_input_t input = NULL;
	rnp_output_t output = NULL;
	rnp_op_encrypt_t op = NULL;
	struct sink sink = { out, false };
	rnp_result_t ret;

	ret = rnp_input_from_callback(&input, cb_read, NULL, in);
	if (ret == RNP_SUCCESS)
		ret = rnp_output_to_callback(&output, cb_write, NULL, &sink);
	if (ret == RNP_SUCCESS)
		ret = rnp_op_encrypt_create(&op, s->ffi, input, output);
	for (size_t i = 0; i < p->n && ret == RNP_SUCCESS; i++)
		ret = rnp_op_encrypt_add_recipient(op, p->keys[i]);
	if (ret == RNP_SUCCESS)
		ret = rnp_op_encrypt_set_armor(op, true);
	if (ret == RNP_SUCCESS)
		ret = rnp_op_encrypt_set_aead(op, "None");
	if (ret == RNP_SUCCESS)
		ret = rnp_op_encrypt_set_cipher(op, p->cipher);
	if (ret == RNP_SUCCESS)
		ret = rnp_op_encrypt_set_compression(op, p->zip,
		    strcmp(p->zip, "Uncompressed") == 0 ? 0 : 6);
	if (ret == RNP_SUCCESS)
		ret = rnp_op_encrypt_execute(op);
	if (ret == RNP_SUCCESS)
		ret = rnp_output_finish(output);
	rnp_op_encrypt_destroy(op);
	rnp_output_destroy(output);
	rnp_input_destroy(input);
	if (ret == RNP_SUCCESS && sink.failed)
		return sg_err_set(err, SG_EIO, "encryption failed: its output "
		    "was refused");
	if (ret != RNP_SUCCESS)
		return sg_err_set(err, SG_ECRYPTO, "encryption failed (rnp error "
		    "0x%x)", (unsigned)ret);
	return SG_OK;
}

/* Whether the keystore's keyring can be read now. The keys loaded into
 * rnp are those of the snapshot; a keystore that cannot be read any more
 * (its mode changed, its disk failed) must fail as it does with gpg. */
static bool
keyring_readable(const struct sg_keystore *ks)
{
	char *path = g_build_filename(ks->gnupg_home, "pubring.kbx", NULL);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	g_free(path);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int
sg_pgp_rnp_encrypt(const struct sg_keystore *ks, const char *const *fprs,
		   size_t nfprs, struct sg_reader *in, struct sg_writer *out,
		   const char **cipher, struct sg_err *why, struct sg_err *err)
{
	struct sg_pgp_rnp *r;
	struct rnp_slot *s;
	struct plan p = { 0 };
	struct prefs *prefs;
	GByteArray **lists;
	int rc = SG_OK, algo;
	bool ok = false;

	if (ks->index == NULL || nfprs == 0)
		return sg_err_set(why, SG_ENOKEY, "not a keystore snapshot");
	if (!keyring_readable(ks))
		return sg_err_set(why, SG_ENOKEY, "the keystore's keyring cannot "
		    "be read");
	r = sg_keyindex_rnp(ks->index);
	s = slot_take(r, err);
	if (s == NULL)
		return SG_ECRYPTO;
	p.keys = g_new0(rnp_key_handle_t, nfprs);
	prefs = g_new0(struct prefs, nfprs);
	lists = g_new0(GByteArray *, nfprs);
	for (size_t i = 0; i < nfprs && rc == 0; i++) {
		rc = load_key(ks, r, s, fprs[i], why);
		if (rc == 0)
			rc = recipient(ks, s, fprs[i], &p.keys[i], &prefs[i], why);
		p.n = i + 1;
	}
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < nfprs; i++)
		lists[i] = prefs[i].sym;
	algo = sg_pgp_select_algo((const GByteArray *const *)lists, nfprs,
	    PREF_SYM);
	p.cipher = cipher_name(algo);
	if (p.cipher == NULL) {
		rc = sg_err_set(why, SG_ENOKEY, "the recipients' preferences "
		    "lead gpg to cipher %d, which is left to gpg", algo);
		goto out;
	}
	for (size_t i = 0; i < nfprs; i++)
		lists[i] = prefs[i].zip;
	p.zip = zip_name(sg_pgp_select_algo((const GByteArray *const *)lists,
	    nfprs, PREF_ZIP));
	if (p.zip == NULL)
		p.zip = "Uncompressed";
	rc = run(s, &p, in, out, err);
	ok = rc == 0;
	if (ok)
		*cipher = p.cipher;
out:
	for (size_t i = 0; i < p.n; i++) {
		rnp_key_handle_destroy(p.keys[i]);
		prefs_clear(&prefs[i]);
	}
	g_free(p.keys);
	g_free(prefs);
	g_free(lists);
	/* After a failed run the context's state is unknown. */
	slot_give_back(r, s, rc == SG_ENOKEY || ok);
	return rc;
}
