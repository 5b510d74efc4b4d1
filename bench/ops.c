/*
 * sealgate-bench: per-operation timings for `make bench` (bench/bench.py),
 * in process, without an MTA.
 *
 *   sealgate-bench pipeline POLICY FROM TO CLIENT_IP FILE N
 *       what the milter does for one message, N times: the transaction
 *       built from FILE (header fields and body spooled as the milter
 *       receives them), the recipient classified as at RCPT time, then
 *       sg_pipeline_run; the keystore is a snapshot, as in the milter.
 *   sealgate-bench gpgme-encrypt GNUPGHOME FPR FILE N
 *   sealgate-bench gpgme-decrypt GNUPGHOME FILE N
 *   sealgate-bench cms-encrypt CERT FILE N
 *   sealgate-bench cms-sign CERT KEY FILE N
 *   sealgate-bench cms-decrypt CERT KEY FILE N
 *       the bare library call with everything else done once beforehand:
 *       GPGME (armored, the key looked up before the first run) and
 *       OpenSSL CMS (S/MIME output as `openssl cms` writes it).
 *
 * Prints one line of JSON: {"ms": [each run], "verdict": ..., "action":
 * ..., "method": ..., "bytes": size of the last output}. Exits 1 when a
 * run fails, so that no figure is produced from a failed operation.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <glib.h>
#include <gmime/gmime.h>
#include <gpgme.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>

#include "sealgate/addr.h"
#include "sealgate/keystore.h"
#include "sealgate/msg.h"
#include "sealgate/openpgp.h"
#include "sealgate/pipeline.h"
#include "sealgate/policy.h"

#define BODY_CHUNK 65535

struct result {
	GArray *ms;             /* double */
	const char *verdict, *action, *method;
	size_t bytes;
};

static double
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("sealgate-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static GBytes *
read_file(const char *path)
{
	GError *gerr = NULL;
	gchar *data;
	gsize len;

	if (!g_file_get_contents(path, &data, &len, &gerr))
		die("%s", gerr->message);
	return g_bytes_new_take(data, len);
}

static int
count(const char *arg)
{
	int n = atoi(arg);

	if (n < 1)
		die("bad count %s", arg);
	return n;
}

/* ---- the pipeline, as the milter runs it -------------------------- */

/* The header fields as an MTA passes them to a milter: name, value
 * without the blanks after the colon, continuation lines kept (LF). */
static void
add_headers(struct sg_msg *msg, const char *p, const char *end)
{
	while (p < end && *p != '\n' && !(*p == '\r' && p + 1 < end &&
	    p[1] == '\n')) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		const char *q, *v;
		GString *value = g_string_new(NULL);
		char *name;

		if (colon == NULL)
			die("the message's header has a line without a colon");
		name = g_strndup(p, (gsize)(colon - p));
		for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
			;
		for (q = v;; ) {
			const char *nl = memchr(q, '\n', (size_t)(end - q));

			if (nl == NULL)
				nl = end;
			g_string_append_len(value, q, nl - q);
			q = nl < end ? nl + 1 : end;
			if (q >= end || (*q != ' ' && *q != '\t'))
				break;
			g_string_append_c(value, '\n');
		}
		g_strdelimit(value->str, "\r", ' ');
		g_strchomp(value->str);
		if (sg_msg_add_header(msg, name, value->str) < 0)
			die("cannot spool the header field %s", name);
		g_free(name);
		g_string_free(value, TRUE);
		p = q;
	}
}

static const char *
body_start(const char *p, const char *end)
{
	for (; p < end; p++) {
		if (p[0] == '\n' && p + 1 < end && p[1] == '\n')
			return p + 2;
		if (p[0] == '\n' && p + 2 < end && p[1] == '\r' && p[2] == '\n')
			return p + 3;
	}
	return end;
}

static void
run_pipeline(char **argv, int n, struct result *res)
{
	struct sg_policy *pol = NULL;
	struct sg_keystore *ks = NULL;
	struct sg_err err = { 0 };
	GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
	GBytes *file = read_file(argv[4]);
	gsize len;
	const char *data = g_bytes_get_data(file, &len), *end = data + len;
	const char *body = body_start(data, end);

	if (sg_policy_load(argv[0], errors, &pol) < 0)
		die("policy %s: %s", argv[0], errors->len ?
		    (char *)g_ptr_array_index(errors, 0) : "invalid");
	g_mkdir_with_parents(pol->gateway.spool_dir, 0700);
	if (sg_keystore_snapshot(pol->gateway.keystore, sg_addr_key, &err,
	    &ks) < 0)
		die("keystore: %s", err.msg);
	for (int i = 0; i < n; i++) {
		struct sg_result r;
		struct sg_msg *msg = NULL;
		enum sg_class cls;
		char fpr[SG_FPR_MAX] = "";
		double t0 = now_ms();

		if (sg_msg_new(pol->gateway.spool_dir, &msg) < 0)
			die("cannot create the message");
		msg->client_ip = g_strdup(argv[3]);
		sg_msg_set_sender(msg, argv[1]);
		if (sg_pipeline_classify(pol, ks, msg, argv[2], &cls, fpr,
		    NULL) < 0 || sg_msg_add_rcpt(msg, argv[2], cls,
		    sg_class_method(cls) >= 0 ? fpr : NULL) < 0)
			die("cannot classify %s", argv[2]);
		add_headers(msg, data, body);
		if (sg_msg_end_headers(msg) < 0)
			die("cannot end the header");
		for (const char *p = body; p < end; p += BODY_CHUNK) {
			size_t k = (size_t)(end - p) < BODY_CHUNK ?
			    (size_t)(end - p) : BODY_CHUNK;

			if (sg_msg_add_body(msg, p, k) < 0)
				die("cannot spool the body");
		}
		sg_result_init(&r);
		sg_pipeline_run(msg, pol, ks, NULL, &r);
		res->bytes = r.edits.body != NULL ?
		    sg_spool_size(r.edits.body) : 0;
		res->verdict = sg_verdict_name(r.verdict);
		res->action = r.action;
		res->method = r.method;
		if (r.verdict != SG_VERDICT_ACCEPT)
			die("verdict %s: %s", res->verdict,
			    r.reason ? r.reason : "");
		sg_result_clear(&r);
		sg_msg_free(msg);
		g_array_append_val(res->ms, (double){ now_ms() - t0 });
	}
	g_bytes_unref(file);
	g_ptr_array_free(errors, TRUE);
	sg_keystore_free(ks);
	sg_policy_unref(pol);
}

/* ---- bare GPGME ---------------------------------------------------- */

/* A context on home. The home is made GPGME's default once, as sealgate
 * does: a context's own engine info makes GPGME run `gpg --version`. */
static gpgme_ctx_t
gpgme_ctx_at(const char *home)
{
	static bool home_set;
	gpgme_ctx_t ctx;

	if (!home_set && gpgme_set_engine_info(GPGME_PROTOCOL_OpenPGP, NULL,
	    home))
		die("cannot use the GnuPG home %s", home);
	home_set = true;
	if (gpgme_new(&ctx) || gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP))
		die("gpgme_new failed");
	gpgme_set_armor(ctx, 1);
	gpgme_set_offline(ctx, 1);
	return ctx;
}

static void
run_gpgme(bool encrypt, char **argv, int n, struct result *res)
{
	GBytes *file = read_file(argv[encrypt ? 2 : 1]);
	gsize len;
	const char *data = g_bytes_get_data(file, &len);
	gpgme_key_t keys[2] = { NULL, NULL };
	gpgme_ctx_t ctx;
	gpgme_error_t gerr;

	if (encrypt) {
		ctx = gpgme_ctx_at(argv[0]);
		if (gpgme_get_key(ctx, argv[1], &keys[0], 0))
			die("no key %s", argv[1]);
		gpgme_release(ctx);
	}
	for (int i = 0; i < n; i++) {
		gpgme_data_t in, out;
		double t0 = now_ms();

		ctx = gpgme_ctx_at(argv[0]);
		if (gpgme_data_new_from_mem(&in, data, len, 0) ||
		    gpgme_data_new(&out))
			die("gpgme data");
		if (encrypt)
			gerr = gpgme_op_encrypt(ctx, keys,
			    GPGME_ENCRYPT_ALWAYS_TRUST, in, out);
		else
			gerr = gpgme_op_decrypt(ctx, in, out);
		if (gerr)
			die("gpgme: %s", gpgme_strerror(gerr));
		res->bytes = (size_t)gpgme_data_seek(out, 0, SEEK_END);
		gpgme_data_release(in);
		gpgme_data_release(out);
		gpgme_release(ctx);
		g_array_append_val(res->ms, (double){ now_ms() - t0 });
	}
	gpgme_key_unref(keys[0]);
	g_bytes_unref(file);
}

/* ---- bare OpenSSL CMS ---------------------------------------------- */

static X509 *
load_cert(const char *path)
{
	FILE *fp = fopen(path, "r");
	X509 *x;

	if (fp == NULL)
		die("%s: %s", path, strerror(errno));
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (x == NULL)
		die("%s: no certificate", path);
	return x;
}

static EVP_PKEY *
load_key(const char *path)
{
	FILE *fp = fopen(path, "r");
	EVP_PKEY *k;

	if (fp == NULL)
		die("%s: %s", path, strerror(errno));
	k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (k == NULL)
		die("%s: no private key", path);
	return k;
}

enum cms_op { CMS_OP_ENCRYPT, CMS_OP_SIGN, CMS_OP_DECRYPT };

static void
run_cms(enum cms_op op, char **argv, int n, struct result *res)
{
	X509 *cert = load_cert(argv[0]);
	EVP_PKEY *key = op == CMS_OP_ENCRYPT ? NULL : load_key(argv[1]);
	GBytes *file = read_file(argv[op == CMS_OP_ENCRYPT ? 1 : 2]);
	gsize len;
	const char *data = g_bytes_get_data(file, &len);
	STACK_OF(X509) *certs = sk_X509_new_null();

	sk_X509_push(certs, cert);
	for (int i = 0; i < n; i++) {
		BIO *in = BIO_new_mem_buf(data, (int)len);
		BIO *out = BIO_new(BIO_s_mem());
		BIO *cont = NULL;
		CMS_ContentInfo *cms = NULL;
		double t0 = now_ms();
		int ok = 0;

		switch (op) {
		case CMS_OP_ENCRYPT:
			cms = CMS_encrypt(certs, in, EVP_aes_256_gcm(),
			    CMS_BINARY | CMS_STREAM);
			ok = cms != NULL && SMIME_write_CMS(out, cms, in,
			    CMS_BINARY | CMS_STREAM);
			break;
		case CMS_OP_SIGN:
			cms = CMS_sign(cert, key, NULL, in,
			    CMS_DETACHED | CMS_BINARY | CMS_STREAM);
			ok = cms != NULL && SMIME_write_CMS(out, cms, in,
			    CMS_DETACHED | CMS_BINARY | CMS_STREAM);
			break;
		case CMS_OP_DECRYPT:
			cms = SMIME_read_CMS(in, &cont);
			ok = cms != NULL && CMS_decrypt(cms, key, cert, NULL,
			    out, 0);
			break;
		}
		if (!ok)
			die("CMS operation failed");
		res->bytes = (size_t)BIO_number_written(out);
		CMS_ContentInfo_free(cms);
		BIO_free(cont);
		BIO_free(in);
		BIO_free(out);
		g_array_append_val(res->ms, (double){ now_ms() - t0 });
	}
	sk_X509_free(certs);
	X509_free(cert);
	EVP_PKEY_free(key);
	g_bytes_unref(file);
}

/* -------------------------------------------------------------------- */

static void
print_result(const struct result *res)
{
	printf("{\"ms\": [");
	for (guint i = 0; i < res->ms->len; i++)
		printf("%s%.4f", i ? ", " : "", g_array_index(res->ms, double, i));
	printf("], \"verdict\": \"%s\", \"action\": \"%s\", \"method\": "
	    "\"%s\", \"bytes\": %zu}\n", res->verdict ? res->verdict : "",
	    res->action ? res->action : "", res->method ? res->method : "",
	    res->bytes);
}

static void
usage(void)
{
	fprintf(stderr, "usage: sealgate-bench pipeline POLICY FROM TO "
	    "CLIENT_IP FILE N\n"
	    "       sealgate-bench gpgme-encrypt GNUPGHOME FPR FILE N\n"
	    "       sealgate-bench gpgme-decrypt GNUPGHOME FILE N\n"
	    "       sealgate-bench cms-encrypt CERT FILE N\n"
	    "       sealgate-bench cms-sign CERT KEY FILE N\n"
	    "       sealgate-bench cms-decrypt CERT KEY FILE N\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct result res = { .ms = g_array_new(FALSE, FALSE, sizeof(double)) };
	struct sg_err err = { 0 };
	const char *op = argc > 1 ? argv[1] : "";

	if (sg_pipeline_init(&err) < 0)
		die("%s", err.msg);
	if (strcmp(op, "pipeline") == 0 && argc == 8)
		run_pipeline(argv + 2, count(argv[7]), &res);
	else if (strcmp(op, "gpgme-encrypt") == 0 && argc == 6)
		run_gpgme(true, argv + 2, count(argv[5]), &res);
	else if (strcmp(op, "gpgme-decrypt") == 0 && argc == 5)
		run_gpgme(false, argv + 2, count(argv[4]), &res);
	else if (strcmp(op, "cms-encrypt") == 0 && argc == 5)
		run_cms(CMS_OP_ENCRYPT, argv + 2, count(argv[4]), &res);
	else if (strcmp(op, "cms-sign") == 0 && argc == 6)
		run_cms(CMS_OP_SIGN, argv + 2, count(argv[5]), &res);
	else if (strcmp(op, "cms-decrypt") == 0 && argc == 6)
		run_cms(CMS_OP_DECRYPT, argv + 2, count(argv[5]), &res);
	else
		usage();
	print_result(&res);
	g_array_free(res.ms, TRUE);
	return 0;
}
