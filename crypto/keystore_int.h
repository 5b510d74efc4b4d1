/* Internals of the keystore code (crypto/keystore*.c). */
#ifndef SEALGATE_KEYSTORE_INT_H
#define SEALGATE_KEYSTORE_INT_H

#include "sealgate/keystore.h"

/* Refuses a symbolic link anywhere in the keystore tree at dir (dir
 * itself included), naming it. A missing dir passes. */
int sg_keystore_check_links(const char *dir, struct sg_err *err);

/* The index of a snapshot (crypto/keyindex.c). */
void sg_keyindex_free(struct sg_keyindex *idx);
bool sg_keyindex_deactivated(const struct sg_keyindex *idx, const char *addr);

/* The deactivated file's lines, unparsed (transfer full); an unreadable
 * file is an error, a missing one empty. */
int sg_keystore_read_deactivated(const struct sg_keystore *ks, char ***lines,
				 struct sg_err *err);

#endif
