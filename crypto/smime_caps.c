/* What S/MIME recipients read: SMIMECapabilities of signatures, and the
 * capability files of the keystore; see include/sealgate/smimecaps.h. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <openssl/cms.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "sealgate/smimecaps.h"
#include "smime_int.h"

/* A capability file is a few lines; anything larger is not one. */
#define CAPS_FILE_MAX 1024
/* A seen record is written again when it is this old (seconds), so that
 * its date says when the announcement was last seen. */
#define REFRESH_AFTER (24 * 3600)

static const char *const cipher_names[] = {
	[SG_SMIME_AES256_GCM] = "aes-256-gcm",
	[SG_SMIME_AES128_GCM] = "aes-128-gcm",
	[SG_SMIME_AES256_CBC] = "aes-256-cbc",
	[SG_SMIME_AES128_CBC] = "aes-128-cbc",
};

const char *
sg_smime_cipher_name(int cipher)
{
	if (cipher < 0 || (size_t)cipher >= G_N_ELEMENTS(cipher_names))
		return NULL;
	return cipher_names[cipher];
}

static int
cipher_by_name(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(cipher_names); i++)
		if (strcmp(cipher_names[i], name) == 0)
			return (int)i;
	return -1;
}

int
sg_smime_caps_parse(const char *list, unsigned *out, struct sg_err *err)
{
	char **words = g_strsplit(list, ",", -1);
	unsigned set = 0;
	int rc = SG_OK;

	for (char **w = words; *w != NULL && rc == 0; w++) {
		int c;

		g_strstrip(*w);
		c = cipher_by_name(*w);
		if (c < 0)
			rc = sg_err_set(err, SG_EINVAL, "unknown cipher \"%s\" "
			    "(sealgate encrypts with aes-256-gcm, aes-128-gcm, "
			    "aes-256-cbc, aes-128-cbc)", *w);
		else
			set |= SG_SMIME_CAP(c);
	}
	if (rc == 0 && set == 0)
		rc = sg_err_set(err, SG_EINVAL, "no cipher named");
	if (rc == 0)
		*out = set;
	g_strfreev(words);
	return rc;
}

void
sg_smime_caps_format(unsigned ciphers, char *buf, size_t len)
{
	GString *s = g_string_new(NULL);

	/* The enum runs from the strongest to the most compatible. */
	for (size_t i = 0; i < G_N_ELEMENTS(cipher_names); i++)
		if (ciphers & SG_SMIME_CAP(i))
			g_string_append_printf(s, "%s%s", s->len ? "," : "",
			    cipher_names[i]);
	g_strlcpy(buf, s->len ? s->str : "-", len);
	g_string_free(s, TRUE);
}

void
sg_smime_caps_describe(const struct sg_smime_caps *caps, char *buf, size_t len)
{
	char list[128], date[32] = "";
	struct tm tm;

	if (caps->source == SG_CAPS_UNKNOWN) {
		g_strlcpy(buf, "unknown", len);
		return;
	}
	sg_smime_caps_format(caps->ciphers, list, sizeof(list));
	if (caps->source == SG_CAPS_SEEN && gmtime_r(&caps->recorded, &tm))
		strftime(date, sizeof(date), " %Y-%m-%d", &tm);
	snprintf(buf, len, "%s (%s%s)", list, caps->source == SG_CAPS_STATED
	    ? "stated" : "seen", date);
}

/* ---- what a signature announces ---- */

static int
cipher_of_nid(int nid)
{
	switch (nid) {
	case NID_aes_256_gcm:	return SG_SMIME_AES256_GCM;
	case NID_aes_128_gcm:	return SG_SMIME_AES128_GCM;
	case NID_aes_256_cbc:	return SG_SMIME_AES256_CBC;
	case NID_aes_128_cbc:	return SG_SMIME_AES128_CBC;
	default:		return -1;
	}
}

bool
sg_smime_caps_announced(CMS_SignerInfo *si, unsigned *out)
{
	int i = CMS_signed_get_attr_by_NID(si, NID_SMIMECapabilities, -1);
	X509_ATTRIBUTE *attr = i >= 0 ? CMS_signed_get_attr(si, i) : NULL;
	STACK_OF(X509_ALGOR) *algs = NULL;
	const unsigned char *p, *end;
	ASN1_TYPE *t;
	unsigned set = 0;
	bool ok = false;

	/* One attribute with one value, as RFC 8551 2.5.2 has it. */
	if (attr == NULL || X509_ATTRIBUTE_count(attr) != 1 ||
	    CMS_signed_get_attr_by_NID(si, NID_SMIMECapabilities, i) >= 0)
		return false;
	t = X509_ATTRIBUTE_get0_type(attr, 0);
	if (t == NULL || t->type != V_ASN1_SEQUENCE ||
	    t->value.sequence->length > SG_SMIME_CAPS_MAX_BYTES)
		return false;
	p = t->value.sequence->data;
	end = p + t->value.sequence->length;
	algs = d2i_X509_ALGORS(NULL, &p, t->value.sequence->length);
	if (algs == NULL || p != end ||
	    sk_X509_ALGOR_num(algs) > SG_SMIME_CAPS_MAX_ITEMS)
		goto out;
	/* What sealgate cannot make (AES-192, 3DES, RC2, ...) and unknown
	 * identifiers count for nothing: nothing weaker than AES-128-CBC is
	 * ever chosen because a recipient announced it. */
	for (int k = 0; k < sk_X509_ALGOR_num(algs); k++) {
		const ASN1_OBJECT *obj;
		int c;

		X509_ALGOR_get0(&obj, NULL, NULL, sk_X509_ALGOR_value(algs, k));
		c = cipher_of_nid(OBJ_obj2nid(obj));
		if (c >= 0)
			set |= SG_SMIME_CAP(c);
	}
	*out = set;
	ok = true;
out:
	sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
	return ok;
}

/* ---- the capability files ---- */

/* A certificate fingerprint as sealgate writes it: 64 upper-case hex
 * digits, safe as a file name. */
static bool
fpr_ok(const char *fpr)
{
	size_t n = 0;

	for (; fpr[n] != '\0'; n++)
		if (!g_ascii_isxdigit(fpr[n]) || g_ascii_islower(fpr[n]))
			return false;
	return n == 64;
}

static char *
caps_dir(const struct sg_keystore *ks)
{
	return g_build_filename(ks->dir, SG_SMIME_CAPS_DIR, NULL);
}

static const char *
source_suffix(enum sg_caps_source source)
{
	return source == SG_CAPS_STATED ? "stated" : "seen";
}

/* Parses the text of a capability file into out (source set by the
 * caller). False when it is not one. */
static bool
parse_file(char *text, struct sg_smime_caps *out)
{
	char **lines = g_strsplit(text, "\n", -1);
	bool have_ciphers = false, have_recorded = false, ok = true;

	for (char **l = lines; *l != NULL && ok; l++) {
		char *colon, *value;

		g_strstrip(*l);
		if (**l == '\0' || **l == '#')
			continue;
		colon = strchr(*l, ':');
		if (colon == NULL) {
			ok = false;
			break;
		}
		*colon = '\0';
		value = g_strstrip(colon + 1);
		if (strcmp(*l, "ciphers") == 0) {
			char **words = g_strsplit(value, ",", -1);

			/* Names this version does not know are skipped. */
			for (char **w = words; *w != NULL; w++) {
				int c = cipher_by_name(g_strstrip(*w));

				if (c >= 0)
					out->ciphers |= SG_SMIME_CAP(c);
			}
			g_strfreev(words);
			have_ciphers = true;
		} else if (strcmp(*l, "signing-time") == 0 ||
		    strcmp(*l, "recorded") == 0) {
			char *end;
			gint64 v = g_ascii_strtoll(value, &end, 10);

			if (*value == '\0' || *end != '\0' || v < 0) {
				ok = false;
			} else if (strcmp(*l, "recorded") == 0) {
				out->recorded = (time_t)v;
				have_recorded = true;
			} else {
				out->signed_at = (time_t)v;
			}
		}
	}
	g_strfreev(lines);
	return ok && have_ciphers && have_recorded;
}

/* Reads NAME of the capability directory dfd: SG_OK and out filled,
 * SG_ENOKEY when there is no such file, SG_EKEYSTORE otherwise. */
static int
read_caps_file(int dfd, const char *name, struct sg_smime_caps *out,
	       struct sg_err *err)
{
	char buf[CAPS_FILE_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return SG_ENOKEY;
	if (fd < 0)
		return sg_err_set(err, SG_EKEYSTORE, "cannot read %s/%s: %s",
		    SG_SMIME_CAPS_DIR, name, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > CAPS_FILE_MAX) {
		close(fd);
		return sg_err_set(err, SG_EKEYSTORE, "%s/%s is not a capability "
		    "file", SG_SMIME_CAPS_DIR, name);
	}
	n = read(fd, buf, CAPS_FILE_MAX);
	close(fd);
	if (n < 0)
		return sg_err_set(err, SG_EKEYSTORE, "cannot read %s/%s: %s",
		    SG_SMIME_CAPS_DIR, name, strerror(errno));
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (memchr(buf, '\0', (size_t)n) != NULL || !parse_file(buf, out)) {
		memset(out, 0, sizeof(*out));
		return sg_err_set(err, SG_EKEYSTORE, "%s/%s is malformed",
		    SG_SMIME_CAPS_DIR, name);
	}
	return SG_OK;
}

static int
get_source(int dfd, const char *fpr, enum sg_caps_source source,
	   struct sg_smime_caps *out, struct sg_err *err)
{
	char *name = g_strdup_printf("%s.%s", fpr, source_suffix(source));
	int rc = read_caps_file(dfd, name, out, err);

	if (rc == 0)
		out->source = source;
	g_free(name);
	return rc;
}

int
sg_smime_caps_get(const struct sg_keystore *ks, const char *fpr,
		  struct sg_smime_caps *out, struct sg_err *err)
{
	char *dir;
	int dfd, rc;

	memset(out, 0, sizeof(*out));
	if (!fpr_ok(fpr))
		return SG_OK;
	dir = caps_dir(ks);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		rc = errno == ENOENT ? SG_OK : sg_err_set(err, SG_EKEYSTORE,
		    "cannot read %s: %s", dir, strerror(errno));
		g_free(dir);
		return rc;
	}
	g_free(dir);
	/* A statement that cannot be read leaves it unknown: the seen set
	 * may be just what the administrator meant to overrule. */
	rc = get_source(dfd, fpr, SG_CAPS_STATED, out, err);
	if (rc == SG_ENOKEY)
		rc = get_source(dfd, fpr, SG_CAPS_SEEN, out, err);
	close(dfd);
	if (rc == SG_ENOKEY)
		rc = SG_OK;
	if (rc < 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* The capability directory of ks, created (0700) when missing; a
 * descriptor, or a negative code. Never through a link. */
static int
open_caps_dir(const struct sg_keystore *ks, struct sg_err *err)
{
	char *dir = caps_dir(ks);
	int dfd;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		sg_err_set(err, SG_EKEYSTORE, "cannot create %s: %s", dir,
		    strerror(errno));
		g_free(dir);
		return SG_EKEYSTORE;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		sg_err_set(err, SG_EKEYSTORE, "cannot open %s: %s", dir,
		    strerror(errno));
	g_free(dir);
	return dfd < 0 ? SG_EKEYSTORE : dfd;
}

/* Writes text as NAME in dfd: aside, synced, renamed into place, 0600. */
static int
write_caps_file(int dfd, const char *name, const char *text,
		struct sg_err *err)
{
	char tmp[128];
	size_t len = strlen(text);
	int fd = -1, rc = SG_OK;

	for (int tries = 0; fd < 0 && tries < 10; tries++) {
		snprintf(tmp, sizeof(tmp), ".%s.%08x", name, g_random_int());
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0)
		return sg_err_set(err, SG_EKEYSTORE, "cannot create a file in "
		    "%s: %s", SG_SMIME_CAPS_DIR, strerror(errno));
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot write %s/%s: %s",
		    SG_SMIME_CAPS_DIR, tmp, strerror(errno));
	if (close(fd) < 0 && rc == 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot write %s/%s: %s",
		    SG_SMIME_CAPS_DIR, tmp, strerror(errno));
	if (rc == 0 && renameat(dfd, tmp, dfd, name) < 0)
		rc = sg_err_set(err, SG_EKEYSTORE, "cannot replace %s/%s: %s",
		    SG_SMIME_CAPS_DIR, name, strerror(errno));
	if (rc < 0)
		unlinkat(dfd, tmp, 0);
	return rc;
}

static char *
file_text(const char *fpr, enum sg_caps_source source, unsigned ciphers,
	  time_t signed_at, time_t now)
{
	char list[128];
	GString *s = g_string_new(NULL);

	sg_smime_caps_format(ciphers, list, sizeof(list));
	g_string_append_printf(s, "# S/MIME capabilities of certificate %s, %s\n"
	    "ciphers: %s\n", fpr, source == SG_CAPS_STATED
	    ? "stated by the administrator" : "announced by a valid signature",
	    ciphers != 0 ? list : "");
	if (source == SG_CAPS_SEEN)
		g_string_append_printf(s, "signing-time: %lld\n",
		    (long long)signed_at);
	g_string_append_printf(s, "recorded: %lld\n", (long long)now);
	return g_string_free(s, FALSE);
}

/* The name of uid, or its number. (transfer full) */
static char *
user_name(uid_t uid)
{
	struct passwd pw, *found = NULL;
	char buf[1024];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
		return g_strdup(found->pw_name);
	return g_strdup_printf("%u", (unsigned)uid);
}

/* Files the gateway writes must stay the keystore owner's: the gateway
 * (and `sealgate keys`) could not replace them otherwise. */
static int
check_owner(const struct sg_keystore *ks, struct sg_err *err)
{
	struct stat st;
	char *owner;

	if (stat(ks->dir, &st) < 0)
		return sg_err_set(err, SG_EKEYSTORE, "keystore %s: %s", ks->dir,
		    strerror(errno));
	if (st.st_uid == geteuid())
		return SG_OK;
	owner = user_name(st.st_uid);
	sg_err_set(err, SG_EKEYSTORE, "keystore %s belongs to user %s, this "
	    "process runs as another: only the keystore's owner writes in it",
	    ks->dir, owner);
	g_free(owner);
	return SG_EKEYSTORE;
}

static bool
in_keystore(const struct sg_keystore *ks, const char *fpr)
{
	char *name = g_strdup_printf("%s.pem", fpr);
	char *path = sg_keystore_smime_path(ks, "certs", name);
	struct stat st;
	bool yes = lstat(path, &st) == 0 && S_ISREG(st.st_mode);

	g_free(name);
	g_free(path);
	return yes;
}

int
sg_smime_caps_record(const struct sg_keystore *ks, const char *fpr,
		     unsigned ciphers, time_t signed_at, bool *changed,
		     struct sg_err *err)
{
	struct sg_smime_caps old;
	struct sg_err ignored = { 0 };
	time_t now = time(NULL);
	char *name = NULL, *text = NULL;
	int dfd, rc;

	*changed = false;
	ciphers &= SG_SMIME_CAPS_ALL;
	/* Only for what sealgate may encrypt to: a signer's certificate
	 * that the keystore does not hold records nothing, so that signed
	 * mail cannot fill the keystore. */
	if (!fpr_ok(fpr) || !in_keystore(ks, fpr))
		return SG_OK;
	/* A clock far ahead in the signer's client would otherwise hold
	 * back every later announcement. */
	if (signed_at > now)
		signed_at = now;
	rc = check_owner(ks, err);
	if (rc < 0)
		return rc;
	dfd = open_caps_dir(ks, err);
	if (dfd < 0)
		return dfd;
	name = g_strdup_printf("%s.seen", fpr);
	/* An unreadable record is replaced. */
	if (read_caps_file(dfd, name, &old, &ignored) == 0 &&
	    (signed_at < old.signed_at || (old.ciphers == ciphers &&
	    now - old.recorded < REFRESH_AFTER)))
		goto out;
	text = file_text(fpr, SG_CAPS_SEEN, ciphers, signed_at, now);
	rc = write_caps_file(dfd, name, text, err);
	*changed = rc == 0;
out:
	close(dfd);
	g_free(text);
	g_free(name);
	return rc;
}

int
sg_smime_caps_state(const struct sg_keystore *ks, const char *fpr,
		    unsigned ciphers, bool clear, bool *changed,
		    struct sg_err *err)
{
	struct sg_smime_caps old;
	struct sg_err ignored = { 0 };
	char *name, *text = NULL;
	int dfd, cur, rc = SG_OK;

	*changed = false;
	if (!fpr_ok(fpr))
		return sg_err_set(err, SG_EINVAL, "not a certificate "
		    "fingerprint: %s", fpr);
	dfd = open_caps_dir(ks, err);
	if (dfd < 0)
		return dfd;
	name = g_strdup_printf("%s.stated", fpr);
	cur = read_caps_file(dfd, name, &old, &ignored);
	if (clear) {
		if (cur != SG_ENOKEY && unlinkat(dfd, name, 0) < 0)
			rc = sg_err_set(err, SG_EKEYSTORE, "cannot remove %s/%s: "
			    "%s", SG_SMIME_CAPS_DIR, name, strerror(errno));
		*changed = cur != SG_ENOKEY && rc == 0;
		goto out;
	}
	ciphers &= SG_SMIME_CAPS_ALL;
	if (cur == 0 && old.ciphers == ciphers)
		goto out;
	text = file_text(fpr, SG_CAPS_STATED, ciphers, 0, time(NULL));
	rc = write_caps_file(dfd, name, text, err);
	*changed = rc == 0;
out:
	close(dfd);
	g_free(text);
	g_free(name);
	return rc;
}
