/* `sealgate process`: one message through the pipeline, exactly as the
 * milter would run it, with the edits applied to a file. */
#include <stdio.h>

#include <glib.h>

#include "msgfile.h"
#include "sealgate/msg.h"
#include "sealgate/pipeline.h"
#include "sealgate.h"

/* The verdict line (first, parsed by scripts) and, next to it, which
 * client the run assumed. */
static void
print_verdict(const struct sg_cli *cli, enum sg_verdict v)
{
	char *client = sg_cli_client_text(cli);

	fprintf(stderr, "verdict: %s\n", sg_verdict_name(v));
	sg_tprintf(stderr, "client: %s\n", client);
	g_free(client);
}

static int
exit_code(enum sg_verdict v)
{
	switch (v) {
	case SG_VERDICT_ACCEPT:		return SG_EXIT_ACCEPT;
	case SG_VERDICT_REJECT:		return SG_EXIT_REJECT;
	case SG_VERDICT_QUARANTINE:	return SG_EXIT_QUARANTINE;
	default:			return SG_EXIT_TEMPFAIL;
	}
}

int
sg_cmd_process(int argc, char **argv)
{
	struct sg_cli cli = { 0 };
	struct sg_result res;
	int code = SG_EXIT_USAGE;

	sg_result_init(&res);
	if (sg_cli_open(argc, argv, SG_CLI_OUTPUT | SG_CLI_FLOOR |
	    SG_CLI_SECRET, &cli) < 0) {
		if (cli.bad_envelope) {
			print_verdict(&cli, SG_VERDICT_REJECT);
			code = SG_EXIT_REJECT;
		} else if (cli.help) {
			code = SG_EXIT_ACCEPT;
		}
		goto out;
	}
	/* The pipeline's class check answers a recipient of another class
	 * with tempfail 452, where the milter answers it at RCPT time. */
	sg_pipeline_run(cli.msg, cli.pol, cli.ks, NULL, &res);
	print_verdict(&cli, res.verdict);
	if (res.rule != NULL)
		sg_tprintf(stderr, "rule: %s\n", res.rule);
	fprintf(stderr, "action: %s%s%s\n", res.action,
	    res.method ? " method=" : "", res.method ? res.method : "");
	if (res.reason != NULL)
		sg_tprintf(stderr, "reason: %s\n", res.reason);
	for (guint i = 0; i < res.fprs->len; i++)
		sg_tprintf(stderr, "key: %s\n",
		    (char *)g_ptr_array_index(res.fprs, i));
	code = exit_code(res.verdict);
	if (res.verdict == SG_VERDICT_REJECT || res.verdict == SG_VERDICT_TEMPFAIL) {
		sg_tprintf(stderr, "%s %s %s\n", res.rcode, res.xcode, res.text);
		goto out;
	}
	if (sg_input_write(cli.input, &res.edits, cli.out) < 0)
		code = SG_EXIT_TEMPFAIL;
out:
	sg_result_clear(&res);
	sg_cli_clear(&cli);
	return code;
}
