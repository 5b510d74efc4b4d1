/* sealgate: one binary, several verbs (DESIGN.md §3). */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include <gmime/gmime.h>
#include <libmilter/mfapi.h>
#include <openssl/crypto.h>

#include "sealgate/floor.h"
#include "sealgate/openpgp.h"
#include "sealgate.h"

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: sealgate VERB [options]\n"
	    "\n"
	    "  milter  [-c FILE] [-s SOCKET] [-u USER] [-f]\n"
	    "                                            run the milter\n"
	    "  process [-c FILE] --from ADDR --to ADDR... [--client-ip IP]\n"
	    "          [--auth USER] [-i IN] [-o OUT]    run one message through the pipeline\n"
	    "  policy check [-c FILE]                    validate the policy file\n"
	    "  policy explain [-c FILE] --from ADDR --to ADDR... [--client-ip IP]\n"
	    "          [--auth USER] [-i IN] [--json]    say per recipient what the policy does\n"
	    "  policy keys [--man]                       list every policy key\n"
	    "  keys [-c FILE] import FILE...             import OpenPGP keys\n"
	    "  keys [-c FILE] list                       list the keystore's identities\n"
	    "  version                                   print versions\n"
	    "\n"
	    "The policy file is -c FILE, else $SEALGATE_CONFIG, else %s.\n"
	    "process and policy explain without --client-ip and --auth: local\n"
	    "submission, as from sendmail on this host (client %s, no login).\n",
	    SG_DEFAULT_CONFIG, SG_LOCAL_SUBMISSION_IP);
}

/* What `version` says of the OpenSSL release in use. */
static const char *
openssl_floor(char *buf, size_t len)
{
	unsigned long num = sg_openssl_runtime();
	char fixed[32];

	if (!sg_openssl_vulnerable(num, fixed, sizeof(fixed)))
		return "security floor: ok";
	snprintf(buf, len, "VULNERABLE: %s; first fixed release of this "
	    "branch: %s", SG_OPENSSL_FLAWS, fixed);
	return buf;
}

static int
cmd_version(void)
{
	unsigned int major, minor, patch;
	struct sg_err err = { 0 };
	char floor[SG_ERR_MAX];

	smfi_version(&major, &minor, &patch);
	sg_openpgp_init(&err);
	printf("sealgate %s\n", SEALGATE_VERSION);
	printf("GMime %u.%u.%u\n", gmime_major_version, gmime_minor_version,
	    gmime_micro_version);
	printf("GPGME %s\n", sg_openpgp_gpgme_version());
	printf("gpg %s\n", sg_openpgp_engine_version());
	printf("OpenSSL %s (%s)\n", OpenSSL_version(OPENSSL_VERSION_STRING),
	    openssl_floor(floor, sizeof(floor)));
	printf("libmilter %u.%u.%u\n", major, minor, patch);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *verb;

	setlocale(LC_ALL, "");
	if (argc < 2) {
		usage(stderr);
		return SG_EXIT_USAGE;
	}
	verb = argv[1];
	/* Every verb that reads mail or keys: a core file or another
	 * process of the user (ptrace, /proc/PID/mem) could hold plaintext
	 * or secret key material. */
	if ((strcmp(verb, "milter") == 0 || strcmp(verb, "process") == 0 ||
	    strcmp(verb, "policy") == 0 || strcmp(verb, "keys") == 0) &&
	    !sg_privs_no_core_dumps())
		return SG_EXIT_USAGE;
	if (strcmp(verb, "milter") == 0)
		return sg_cmd_milter(argc - 1, argv + 1);
	if (strcmp(verb, "process") == 0)
		return sg_cmd_process(argc - 1, argv + 1);
	if (strcmp(verb, "policy") == 0)
		return sg_cmd_policy(argc - 1, argv + 1);
	if (strcmp(verb, "keys") == 0)
		return sg_cmd_keys(argc - 1, argv + 1);
	if (strcmp(verb, "version") == 0 || strcmp(verb, "--version") == 0)
		return cmd_version();
	if (strcmp(verb, "help") == 0 || strcmp(verb, "--help") == 0 ||
	    strcmp(verb, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	sg_tprintf(stderr, "sealgate: unknown verb \"%s\"\n", verb);
	usage(stderr);
	return SG_EXIT_USAGE;
}
