/* `sealgate policy check|keys`. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "sealgate.h"

int
sg_cmd_policy(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "man", no_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *sub;
	struct sg_policy *pol;
	bool man = false;
	int c;

	/* explain has options of its own: hand it everything else. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "explain") == 0 &&
		    strcmp(argv[i - 1], "-c") != 0 &&
		    strcmp(argv[i - 1], "--config") != 0) {
			char **args = g_new0(char *, argc + 1);
			int n = 0, rc;

			args[n++] = argv[i];
			for (int j = 1; j < argc; j++)
				if (j != i)
					args[n++] = argv[j];
			rc = sg_cmd_explain(n, args);
			g_free(args);
			return rc;
		}
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'm': man = true; break;
		default: goto usage;
		}
	}
	if (optind + 1 != argc)
		goto usage;
	sub = argv[optind];
	if (strcmp(sub, "keys") == 0) {
		/* --man: the keys as roff, for sealgate-policy(5). */
		if (man)
			sg_policy_describe_man(stdout);
		else
			sg_policy_describe(stdout);
		return 0;
	}
	if (man)
		goto usage;
	if (strcmp(sub, "check") != 0) {
		fprintf(stderr, "sealgate policy: unknown command \"%s\"\n", sub);
		return SG_EXIT_USAGE;
	}
	pol = sg_load_policy_or_report(config);
	if (pol == NULL)
		return SG_EXIT_USAGE;
	sg_tprintf(stdout, "%s: OK\n", pol->path);
	sg_policy_unref(pol);
	return 0;
usage:
	fprintf(stderr, "usage: sealgate policy check [-c FILE] | "
	    "explain [-c FILE] --from ADDR --to ADDR... | keys [--man]\n");
	return SG_EXIT_USAGE;
}
