/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* "a" + "/" + "b" as a new string (NULL on ENOMEM): leading slashes of b are dropped and no
 * slash is doubled, so aj_path_join("/x/", "/y") is "/x/y"; an empty b gives a copy of a. Pure
 * string work: nothing is resolved, ".." is kept as written. */
char *aj_path_join(const char *a, const char *b);
