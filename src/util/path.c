/* SPDX-License-Identifier: Apache-2.0 */
#include <stdbool.h>
#include <string.h>

#include "util/format.h"
#include "util/path.h"

char *aj_path_join(const char *a, const char *b)
{
        while (*b == '/')
                b++;
        bool slash = *b && !(a[0] && a[strlen(a) - 1] == '/');
        char *s = NULL;
        if (aj_asprintf(&s, "%s%s%s", a, slash ? "/" : "", b) < 0)
                return NULL;
        return s;
}
