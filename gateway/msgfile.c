/* Message files for the offline commands: a file (or standard input) read
 * into a spool, and the result written to a file (or standard output);
 * reading the fields and applying the edits is gateway/message/input.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "msgfile.h"
#include "sealgate.h"

#define CHUNK 65536

static int
read_all(const char *path, const char *spool_dir, struct sg_spool **out)
{
	char buf[CHUNK];
	ssize_t n;
	int fd = 0, rc;

	if (path != NULL && strcmp(path, "-") != 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			sg_tprintf(stderr, "sealgate: %s: %s\n", path,
			    strerror(errno));
			return SG_EIO;
		}
	}
	rc = sg_spool_new(spool_dir, SG_SPOOL_MEM_LIMIT, out);
	while (rc == 0 && (n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sg_tprintf(stderr, "sealgate: reading %s: %s\n",
			    path ? path : "stdin", strerror(errno));
			rc = SG_EIO;
			break;
		}
		rc = sg_spool_write(*out, buf, (size_t)n);
	}
	if (fd != 0)
		close(fd);
	return rc;
}

int
sg_input_read(const char *path, const char *spool_dir, struct sg_input **out)
{
	struct sg_spool *raw = NULL;
	int rc;

	rc = read_all(path, spool_dir, &raw);
	if (rc < 0) {
		sg_spool_free(raw);
		return rc;
	}
	*out = sg_input_new(raw);
	return SG_OK;
}

int
sg_input_write(struct sg_input *in, const struct sg_edits *ed, const char *path)
{
	FILE *fp = stdout;
	int rc;

	if (path != NULL && strcmp(path, "-") != 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0 || (fp = fdopen(fd, "wb")) == NULL) {
			sg_tprintf(stderr, "sealgate: %s: %s\n", path,
			    strerror(errno));
			if (fd >= 0)
				close(fd);
			return SG_EIO;
		}
	}
	rc = sg_input_write_to(in, ed, fp);
	if (fflush(fp) != 0)
		rc = SG_EIO;
	if (fp != stdout && fclose(fp) != 0)
		rc = SG_EIO;
	if (rc < 0)
		sg_tprintf(stderr, "sealgate: writing %s: %s\n",
		    path ? path : "stdout", sg_strerror(rc));
	return rc;
}
