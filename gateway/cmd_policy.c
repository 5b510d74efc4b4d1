/* `sealgate policy check|keys`. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "sealgate.h"

int
sg_cmd_policy(int argc, char **argv)
{
	const char *config = NULL, *sub;
	struct sg_policy *pol;

	if (sg_parse_config_option(argc, argv, &config) < 0)
		return SG_EXIT_USAGE;
	if (optind >= argc) {
		fprintf(stderr, "usage: sealgate policy check [-c FILE] | "
		    "sealgate policy keys\n");
		return SG_EXIT_USAGE;
	}
	sub = argv[optind];
	if (strcmp(sub, "keys") == 0) {
		sg_policy_describe(stdout);
		return 0;
	}
	if (strcmp(sub, "check") != 0) {
		fprintf(stderr, "sealgate policy: unknown command \"%s\"\n", sub);
		return SG_EXIT_USAGE;
	}
	pol = sg_load_policy_or_report(config);
	if (pol == NULL)
		return SG_EXIT_USAGE;
	printf("%s: OK\n", pol->path);
	sg_policy_unref(pol);
	return 0;
}
