/* Keystore snapshots: the keystore indexed in memory once per change, so
 * that looking a key up starts no process; see include/sealgate/keystore.h
 * and keyindex.h. */
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <glib.h>
#include <gpgme.h>
#include <openssl/x509v3.h>

#include "keyindex.h"
#include "openpgp_int.h"
#include "smime_int.h"

struct pgp_subkey {
	bool can_encrypt, can_sign, revoked, expired, disabled, invalid;
	bool secret;            /* its secret part is in the keystore */
	char grip[41];          /* keygrip, "" when unknown */
	char fpr[SG_FPR_MAX];   /* "" when unknown */
	long expires;           /* 0: never */
	long created;
};

/* What the listing said of a key; expiry is judged again at lookup. */
struct pgp_key {
	char fpr[SG_FPR_MAX];
	bool revoked, expired, disabled, invalid;
	bool can_encrypt, can_sign, secret;
	bool shared;            /* (sub)key material of another key too */
	long expires;           /* primary key's, 0: never */
	guint nsub;
	struct pgp_subkey *sub; /* sub[0] is the primary key */
};

/* A key one of whose user ids names the address. */
struct pgp_match {
	const struct pgp_key *key;
	bool uid_ok;            /* by a user id neither revoked nor invalid */
};

struct sg_keyindex {
	sg_addr_key_fn addr_key;
	GPtrArray *keys;                /* struct pgp_key *, keyring order */
	GHashTable *pgp;                /* address -> GArray of pgp_match */
	STACK_OF(X509) *certs, *anchors;
	GHashTable *smime;              /* address -> GArray of int */
	GHashTable *cert_fpr;           /* fingerprint -> X509 in certs */
	GHashTable *smime_keys;         /* FPR of smime/keys/FPR.pem */
	GHashTable *deactivated;        /* addresses */
	struct sg_pgp_rnp *rnp;         /* in-process encryption state */
};

static void
pgp_key_free(gpointer p)
{
	struct pgp_key *k = p;

	g_free(k->sub);
	g_free(k);
}

static void
array_free(gpointer p)
{
	g_array_free(p, TRUE);
}

void
sg_keyindex_free(struct sg_keyindex *idx)
{
	if (idx == NULL)
		return;
	g_ptr_array_free(idx->keys, TRUE);
	g_hash_table_destroy(idx->pgp);
	g_hash_table_destroy(idx->smime);
	if (idx->cert_fpr != NULL)
		g_hash_table_destroy(idx->cert_fpr);
	g_hash_table_destroy(idx->smime_keys);
	g_hash_table_destroy(idx->deactivated);
	sg_pgp_rnp_free(idx->rnp);
	sk_X509_pop_free(idx->certs, X509_free);
	sk_X509_pop_free(idx->anchors, X509_free);
	g_free(idx);
}

static struct sg_keyindex *
keyindex_new(sg_addr_key_fn addr_key)
{
	struct sg_keyindex *idx = g_new0(struct sg_keyindex, 1);

	idx->addr_key = addr_key;
	idx->keys = g_ptr_array_new_with_free_func(pgp_key_free);
	idx->pgp = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	    array_free);
	idx->smime = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	    array_free);
	idx->smime_keys = g_hash_table_new_full(g_str_hash, g_str_equal,
	    g_free, NULL);
	idx->deactivated = g_hash_table_new_full(g_str_hash, g_str_equal,
	    g_free, NULL);
	idx->rnp = sg_pgp_rnp_new();
	return idx;
}

/* The array filed under the address of a user id or certificate: as it
 * is written there, ASCII letters folded, exactly as gpg's "<addr>"
 * search, `keys remove` and the README match it. Only the envelope side
 * is canonicalised (lookup): a key whose address merely canonicalises to
 * another's ("<bob@partner.example.>", a source route, a comment) is not
 * that address's key. (transfer none) */
static GArray *
slot(GHashTable *table, const char *addr, guint elt_size)
{
	char *k;
	GArray *a;

	if (strchr(addr, '@') == NULL)
		return NULL;
	k = g_ascii_strdown(addr, -1);
	a = g_hash_table_lookup(table, k);
	if (a == NULL) {
		a = g_array_new(FALSE, TRUE, elt_size);
		g_hash_table_insert(table, k, a);
	} else {
		g_free(k);
	}
	return a;
}

/* ---- OpenPGP ---- */

static struct pgp_key *
pgp_key_new(const struct sg_keystore *ks, gpgme_key_t key)
{
	struct pgp_key *k = g_new0(struct pgp_key, 1);
	guint n = 0;

	g_strlcpy(k->fpr, key->fpr, sizeof(k->fpr));
	k->revoked = key->revoked;
	k->expired = key->expired;
	k->disabled = key->disabled;
	k->invalid = key->invalid;
	k->can_encrypt = key->can_encrypt;
	k->can_sign = key->can_sign;
	k->secret = sg_pgp_has_secret(ks, key);
	k->expires = key->subkeys != NULL ? key->subkeys->expires : 0;
	for (gpgme_subkey_t sk = key->subkeys; sk != NULL; sk = sk->next)
		k->nsub++;
	k->sub = g_new0(struct pgp_subkey, k->nsub);
	for (gpgme_subkey_t sk = key->subkeys; sk != NULL; sk = sk->next, n++) {
		struct pgp_subkey *s = &k->sub[n];

		s->can_encrypt = sk->can_encrypt;
		s->can_sign = sk->can_sign;
		s->revoked = sk->revoked;
		s->expired = sk->expired;
		s->disabled = sk->disabled;
		s->invalid = sk->invalid;
		s->secret = sg_pgp_subkey_has_secret(ks, sk);
		s->expires = sk->expires;
		s->created = sk->timestamp;
		if (sk->keygrip != NULL)
			g_strlcpy(s->grip, sk->keygrip, sizeof(s->grip));
		if (sk->fpr != NULL)
			g_strlcpy(s->fpr, sk->fpr, sizeof(s->fpr));
	}
	return k;
}

/* Files k under every address of its user ids. */
static void
index_uids(struct sg_keyindex *idx, const struct pgp_key *k, gpgme_key_t key)
{
	for (gpgme_user_id_t uid = key->uids; uid != NULL; uid = uid->next) {
		bool ok = !uid->revoked && !uid->invalid;
		struct pgp_match m = { k, ok };
		GArray *a;

		if (uid->email == NULL || *uid->email == '\0')
			continue;
		a = slot(idx->pgp, uid->email, sizeof(m));
		if (a == NULL)
			continue;
		/* Several user ids of one key with the same address. */
		if (a->len > 0 &&
		    g_array_index(a, struct pgp_match, a->len - 1).key == k)
			g_array_index(a, struct pgp_match, a->len - 1).uid_ok |= ok;
		else
			g_array_append_val(a, m);
	}
}

/*
 * How many OpenPGP keys the keyring file holds, read from the file itself.
 * gpg reports an unreadable or corrupt keyring only on its stderr and
 * exit status, which GPGME does not pass on: its listing just ends early.
 * An index that silently lacked keys would send mail in clear where a key
 * exists, so the listing must account for every key of the file.
 *
 * A keybox (pubring.kbx) is a sequence of blobs, each starting with its
 * length (4 bytes, big-endian, the header included) and its type (1 byte:
 * 1 the file header, with "KBXf" at offset 8; 2 an OpenPGP key; 0 a
 * deleted blob). No pubring.kbx: no keys.
 */
#define KBX_HEADER 1
#define KBX_OPENPGP 2
#define KBX_BLOB_MAX (16u << 20)

static int
keybox_keys(const struct sg_keystore *ks, unsigned *out, struct sg_err *err)
{
	char *path = g_build_filename(ks->gnupg_home, "pubring.kbx", NULL);
	gchar *data = NULL;
	gsize len = 0, off = 0;
	GError *gerr = NULL;
	unsigned n = 0;
	int rc = SG_OK;

	if (!g_file_test(path, G_FILE_TEST_EXISTS))
		goto out;
	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot read the keyring: %s",
		    gerr->message);
		g_error_free(gerr);
		goto out;
	}
	while (off < len) {
		const guchar *b = (const guchar *)data + off;
		guint32 blob;

		if (len - off < 5)
			break;
		blob = (guint32)b[0] << 24 | (guint32)b[1] << 16 |
		    (guint32)b[2] << 8 | b[3];
		if (blob < 5 || blob > KBX_BLOB_MAX || blob > len - off ||
		    (off == 0 && (b[4] != KBX_HEADER || blob < 12 ||
		    memcmp(b + 8, "KBXf", 4) != 0)))
			break;
		if (b[4] == KBX_OPENPGP)
			n++;
		off += blob;
	}
	if (off != len)
		rc = sg_err_set(err, SG_EKEYSTORE, "the keyring %s is corrupt "
		    "(at byte %" G_GSIZE_FORMAT ")", path, off);
out:
	if (rc == 0)
		*out = n;
	g_free(data);
	g_free(path);
	return rc;
}

struct index_arg {
	struct sg_keyindex *idx;
	const struct sg_keystore *ks;
	GHashTable *grips, *shared;     /* see sg_pgp_grips_add */
};

static void
index_key(gpgme_key_t key, void *arg)
{
	struct index_arg *a = arg;
	struct pgp_key *k;

	if (key->fpr == NULL)
		return;
	k = pgp_key_new(a->ks, key);
	g_ptr_array_add(a->idx->keys, k);
	index_uids(a->idx, k, key);
	sg_pgp_grips_add(a->grips, a->shared, key);
}

/* Keys that share (sub)key material with another key are used for
 * nothing: GnuPG would take either key's secret for both (see
 * openpgp_grips.c). keys import refuses them; a keystore filled before
 * may hold some. */
static void
mark_shared(struct sg_keyindex *idx, GHashTable *shared)
{
	for (guint i = 0; i < idx->keys->len; i++) {
		struct pgp_key *k = g_ptr_array_index(idx->keys, i);

		for (guint j = 0; j < k->nsub; j++)
			if (g_hash_table_contains(shared, k->sub[j].grip))
				k->shared = true;
	}
}

/* One listing of the whole keyring, which must show every key of it. */
static int
index_openpgp(struct sg_keyindex *idx, const struct sg_keystore *ks,
	      struct sg_err *err)
{
	struct index_arg arg = { idx, ks, sg_pgp_grips_new(),
	    sg_pgp_grips_new() };
	unsigned in_file = 0, listed = 0;
	int rc;

	rc = keybox_keys(ks, &in_file, err);
	if (rc == 0)
		rc = sg_pgp_each_key(ks, NULL, index_key, &arg, &listed, err);
	if (rc == 0 && listed != in_file)
		rc = sg_err_set(err, SG_EKEYSTORE, "the key listing showed %u of "
		    "the keyring's %u keys", listed, in_file);
	mark_shared(idx, arg.shared);
	g_hash_table_destroy(arg.grips);
	g_hash_table_destroy(arg.shared);
	return rc;
}

static bool
past(long when, time_t now)
{
	return when != 0 && when <= now;
}

static bool
key_usable(const struct pgp_key *k, time_t now)
{
	return !k->revoked && !k->expired && !past(k->expires, now) &&
	    !k->disabled && !k->invalid;
}

static bool
sub_usable(const struct pgp_subkey *s, time_t now)
{
	return !s->revoked && !s->expired && !past(s->expires, now) &&
	    !s->disabled && !s->invalid;
}

/* Creation time of the newest usable encryption subkey, 0 if none. */
static long
best_encryption_subkey(const struct pgp_key *k, time_t now)
{
	long best = 0;

	for (guint i = 0; i < k->nsub; i++)
		if (k->sub[i].can_encrypt && sub_usable(&k->sub[i], now) &&
		    k->sub[i].created > best)
			best = k->sub[i].created;
	return best;
}

static bool
can_sign_now(const struct pgp_key *k, time_t now)
{
	for (guint i = 0; i < k->nsub; i++)
		if (k->sub[i].can_sign && sub_usable(&k->sub[i], now))
			return true;
	return false;
}

/* The rank of a key for addr (higher is better), 0 when it does not fit. */
static long
rank(const struct pgp_match *m, bool sign, time_t now)
{
	const struct pgp_key *k = m->key;

	if (!key_usable(k, now) || !m->uid_ok || k->shared)
		return 0;
	if (!sign)
		return k->can_encrypt ? best_encryption_subkey(k, now) : 0;
	if (!k->can_sign || !k->secret || k->nsub == 0 || !can_sign_now(k, now))
		return 0;
	return k->sub[0].created;
}

static const GArray *
lookup(GHashTable *table, sg_addr_key_fn addr_key, const char *addr)
{
	char *k = addr_key(addr);
	const GArray *a = k != NULL ? g_hash_table_lookup(table, k) : NULL;

	g_free(k);
	return a;
}

int
sg_keyindex_find_pgp(const struct sg_keyindex *idx, const char *addr,
		     bool sign, char fpr[SG_FPR_MAX], struct sg_err *err)
{
	const GArray *a;
	time_t now = time(NULL);
	long best = 0, r;
	unsigned seen = 0;

	if (!sg_pgp_addr_ok(addr))
		return sg_err_set(err, SG_ENOKEY, "not a usable address");
	a = lookup(idx->pgp, idx->addr_key, addr);
	for (guint i = 0; a != NULL && i < a->len; i++) {
		const struct pgp_match *m = &g_array_index(a, struct pgp_match, i);

		/* Signing looks at keys with their secret part only. */
		if (sign && !m->key->secret)
			continue;
		seen++;
		r = rank(m, sign, now);
		if (r > best) {
			best = r;
			g_strlcpy(fpr, m->key->fpr, SG_FPR_MAX);
		}
	}
	if (best > 0)
		return SG_OK;
	if (sign)
		return sg_err_set(err, SG_ENOKEY, "%s", seen == 0
		    ? "no OpenPGP secret key" : "no usable OpenPGP signing key "
		    "(expired, revoked or cannot sign)");
	return sg_err_set(err, SG_ENOKEY, "%s", seen == 0 ? "no OpenPGP key"
	    : "no usable OpenPGP key (expired, revoked or cannot encrypt)");
}

int
sg_keyindex_pgp_encryption_subkey(const struct sg_keyindex *idx,
				  const char *fpr, char sub[SG_FPR_MAX])
{
	time_t now = time(NULL);

	for (guint i = 0; i < idx->keys->len; i++) {
		const struct pgp_key *k = g_ptr_array_index(idx->keys, i);
		long best = 0;

		if (g_ascii_strcasecmp(k->fpr, fpr) != 0)
			continue;
		if (!key_usable(k, now) || k->shared || !k->can_encrypt)
			return SG_ENOKEY;
		/* The same choice as best_encryption_subkey: the newest. */
		for (guint j = 0; j < k->nsub; j++)
			if (k->sub[j].can_encrypt && sub_usable(&k->sub[j], now) &&
			    k->sub[j].created > best && k->sub[j].fpr[0] != '\0') {
				best = k->sub[j].created;
				g_strlcpy(sub, k->sub[j].fpr, SG_FPR_MAX);
			}
		return best > 0 ? SG_OK : SG_ENOKEY;
	}
	return SG_ENOKEY;
}

struct sg_pgp_rnp *
sg_keyindex_rnp(const struct sg_keyindex *idx)
{
	return idx->rnp;
}

bool
sg_keyindex_pgp_decrypts(const struct sg_keyindex *idx, const char *addr)
{
	const GArray *a;

	if (!sg_pgp_addr_ok(addr))
		return false;
	a = lookup(idx->pgp, idx->addr_key, addr);
	for (guint i = 0; a != NULL && i < a->len; i++) {
		const struct pgp_match *m = &g_array_index(a, struct pgp_match, i);
		const struct pgp_key *k = m->key;

		if (!m->uid_ok || k->disabled || k->invalid)
			continue;
		for (guint j = 0; j < k->nsub; j++) {
			const struct pgp_subkey *s = &k->sub[j];

			if (s->can_encrypt && s->secret && !s->disabled &&
			    !s->invalid)
				return true;
		}
	}
	return false;
}

/* When k stops serving, 0: never. Its primary key's expiry, or earlier
 * when every usable subkey it has for encryption or signing expires
 * before that. */
static long
pgp_key_ends(const struct pgp_key *k, time_t now)
{
	long end = k->expires, last = -1;

	for (guint i = 0; i < k->nsub; i++) {
		const struct pgp_subkey *s = &k->sub[i];

		if (!(s->can_encrypt || s->can_sign) || !sub_usable(s, now))
			continue;
		if (s->expires == 0)
			return end;
		if (s->expires > last)
			last = s->expires;
	}
	return last > 0 && (end == 0 || last < end) ? last : end;
}

/* Certificates of stack valid at now that expire by until. */
static unsigned
certs_expiring(STACK_OF(X509) *certs, time_t now, time_t until)
{
	unsigned n = 0;

	for (int i = 0; i < sk_X509_num(certs); i++) {
		const X509 *x = sk_X509_value(certs, i);

		if (ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), now) <= 0 &&
		    ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), now) > 0 &&
		    ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), until) <= 0)
			n++;
	}
	return n;
}

void
sg_keystore_expiring(const struct sg_keystore *ks, time_t now, time_t until,
		     struct sg_expiring *out)
{
	const struct sg_keyindex *idx = ks->index;

	memset(out, 0, sizeof(*out));
	if (idx == NULL)
		return;
	for (guint i = 0; i < idx->keys->len; i++) {
		const struct pgp_key *k = g_ptr_array_index(idx->keys, i);
		long end;

		if (!key_usable(k, now))
			continue;
		end = pgp_key_ends(k, now);
		if (end != 0 && end > now && end <= until)
			out->openpgp++;
	}
	out->smime = certs_expiring(idx->certs, now, until);
	out->anchors = certs_expiring(idx->anchors, now, until);
}

/* ---- S/MIME ---- */

static void
index_certs(struct sg_keyindex *idx)
{
	char fpr[SG_FPR_MAX];

	idx->cert_fpr = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
	    NULL);
	for (int i = 0; i < sk_X509_num(idx->certs); i++) {
		X509 *cert = sk_X509_value(idx->certs, i);
		STACK_OF(OPENSSL_STRING) *emails = X509_get1_email(cert);

		/* By what the certificate is, not by its file's name. */
		sg_x509_fpr(cert, fpr);
		if (fpr[0] != '\0')
			g_hash_table_insert(idx->cert_fpr, g_strdup(fpr), cert);

		for (int e = 0; e < sk_OPENSSL_STRING_num(emails); e++) {
			GArray *a = slot(idx->smime,
			    sk_OPENSSL_STRING_value(emails, e), sizeof(int));

			/* Two addresses of one certificate that fold alike. */
			if (a != NULL && (a->len == 0 ||
			    g_array_index(a, int, a->len - 1) != i))
				g_array_append_val(a, i);
		}
		X509_email_free(emails);
	}
}

/* The names FPR of the files FPR.pem in smime/SUB; NULL (err set) when
 * the directory cannot be read. (transfer full) */
static GHashTable *
pem_names(const struct sg_keystore *ks, const char *sub, struct sg_err *err)
{
	char *dir = sg_keystore_smime_path(ks, sub, NULL);
	GDir *d = g_dir_open(dir, 0, NULL);
	GHashTable *names = NULL;
	const char *name;

	if (d == NULL) {
		sg_err_set(err, SG_EKEYSTORE, "cannot read %s", dir);
		goto out;
	}
	names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	while ((name = g_dir_read_name(d)) != NULL)
		if (g_str_has_suffix(name, ".pem"))
			g_hash_table_add(names, g_strndup(name, strlen(name) - 4));
	g_dir_close(d);
out:
	g_free(dir);
	return names;
}

/* The certificates of smime/SUB, every file of it read: a file that does
 * not parse (a corrupt store) fails the build rather than lose a
 * partner's certificate. */
static int
load_certs(const struct sg_keystore *ks, const char *sub,
	   STACK_OF(X509) **out, struct sg_err *err)
{
	GHashTable *names = pem_names(ks, sub, err);
	STACK_OF(X509) *certs;
	int rc = SG_OK;

	if (names == NULL)
		return SG_EKEYSTORE;
	certs = sg_smime_load_dir(ks, sub);
	if (certs == NULL || (guint)sk_X509_num(certs) !=
	    g_hash_table_size(names))
		rc = sg_err_set(err, SG_EKEYSTORE, "smime/%s: %d of %u "
		    "certificate files could be read", sub,
		    certs != NULL ? sk_X509_num(certs) : 0,
		    g_hash_table_size(names));
	g_hash_table_destroy(names);
	*out = certs;
	return rc;
}

static int
index_smime(struct sg_keyindex *idx, const struct sg_keystore *ks,
	    struct sg_err *err)
{
	int rc;

	rc = load_certs(ks, "certs", &idx->certs, err);
	if (rc == 0)
		rc = load_certs(ks, "anchors", &idx->anchors, err);
	if (rc == 0) {
		g_hash_table_destroy(idx->smime_keys);
		idx->smime_keys = pem_names(ks, "keys", err);
		if (idx->smime_keys == NULL) {
			idx->smime_keys = g_hash_table_new(g_str_hash,
			    g_str_equal);
			rc = SG_EKEYSTORE;
		}
	}
	if (rc == 0)
		index_certs(idx);
	return rc;
}

STACK_OF(X509) *
sg_keyindex_certs(const struct sg_keyindex *idx, const char *sub)
{
	if (strcmp(sub, "certs") == 0)
		return X509_chain_up_ref(idx->certs);
	if (strcmp(sub, "anchors") == 0)
		return X509_chain_up_ref(idx->anchors);
	return NULL;
}

X509 *
sg_keyindex_cert(const struct sg_keyindex *idx, const char *fpr)
{
	X509 *cert = idx->cert_fpr != NULL ?
	    g_hash_table_lookup(idx->cert_fpr, fpr) : NULL;

	if (cert != NULL)
		X509_up_ref(cert);
	return cert;
}

const GArray *
sg_keyindex_cert_candidates(const struct sg_keyindex *idx, const char *addr)
{
	return lookup(idx->smime, idx->addr_key, addr);
}

bool
sg_keyindex_has_smime_key(const struct sg_keyindex *idx, const char *fpr)
{
	return g_hash_table_contains(idx->smime_keys, fpr);
}

/* ---- deactivated identities ---- */

static int
index_deactivated(struct sg_keyindex *idx, const struct sg_keystore *ks,
		  struct sg_err *err)
{
	char **lines;
	int rc;

	rc = sg_keystore_read_deactivated(ks, &lines, err);
	if (rc < 0)
		return rc;
	for (char **l = lines; *l != NULL; l++) {
		char *k;

		g_strstrip(*l);
		if (**l == '\0')
			continue;
		/* A line that is no address still matches itself. */
		k = idx->addr_key(*l);
		g_hash_table_add(idx->deactivated,
		    k != NULL ? k : g_ascii_strdown(*l, -1));
	}
	g_strfreev(lines);
	return SG_OK;
}

bool
sg_keyindex_deactivated(const struct sg_keyindex *idx, const char *addr)
{
	char *k = idx->addr_key(addr);
	bool found;

	if (k == NULL)
		k = g_ascii_strdown(addr, -1);
	found = g_hash_table_contains(idx->deactivated, k);
	g_free(k);
	return found;
}

/* ---- the snapshot ---- */

/* Identities of the parts a change replaces (sg_keystore_stage_commit). */
static void
parts_of(const struct sg_keystore *ks, struct stat st[2])
{
	memset(st, 0, 2 * sizeof(*st));
	stat(ks->gnupg_home, &st[0]);
	stat(ks->smime_dir, &st[1]);
}

static bool
same_parts(const struct stat a[2], const struct stat b[2])
{
	for (int i = 0; i < 2; i++)
		if (a[i].st_dev != b[i].st_dev || a[i].st_ino != b[i].st_ino)
			return false;
	return true;
}

/* A change replaces a part while it is read: its files and the listing
 * of its keys may then disagree, so an index that fails its checks is
 * built again when a part was replaced meanwhile. Changes come seconds
 * apart, a build takes milliseconds. */
#define BUILD_TRIES 20

static int
build_index(const struct sg_keystore *ks, sg_addr_key_fn addr_key,
	    struct sg_err *err, struct sg_keyindex **out)
{
	struct stat before[2], after[2];
	struct sg_keyindex *idx;
	int rc;

	for (int tries = 1;; tries++) {
		parts_of(ks, before);
		idx = keyindex_new(addr_key);
		rc = index_openpgp(idx, ks, err);
		if (rc == 0)
			rc = index_smime(idx, ks, err);
		if (rc == 0)
			rc = index_deactivated(idx, ks, err);
		if (rc == 0) {
			*out = idx;
			return SG_OK;
		}
		sg_keyindex_free(idx);
		parts_of(ks, after);
		if (same_parts(before, after) || tries == BUILD_TRIES)
			return rc;
		err->msg[0] = '\0';
	}
}

int
sg_keystore_snapshot(const char *dir, sg_addr_key_fn addr_key,
		     struct sg_err *err, struct sg_keystore **out)
{
	struct sg_keystore_gen gen;
	struct sg_keystore *ks = NULL;
	struct sg_keyindex *idx = NULL;
	int rc;

	/* Before anything is read: a change committed during the build
	 * leaves a newer generation, and the next check builds again. */
	sg_keystore_generation(dir, &gen);
	rc = sg_keystore_open(dir, 0, err, &ks);
	if (rc < 0)
		return rc;
	rc = build_index(ks, addr_key, err, &idx);
	if (rc < 0) {
		sg_keystore_free(ks);
		return rc;
	}
	ks->index = idx;
	ks->gen = gen;
	*out = ks;
	return SG_OK;
}
