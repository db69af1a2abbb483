/* SPDX-License-Identifier: Apache-2.0 */
/* The small shared helpers of src/util/. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/format.h"
#include "util/path.h"

Test(path, join)
{
        static const struct {
                const char *a, *b, *want;
        } cases[] = {
                { "/x", "y", "/x/y" },         { "/x/", "y", "/x/y" },      { "/x", "/y", "/x/y" },
                { "/x/", "//y/z", "/x/y/z" },  { "/x", "", "/x" },          { "", "y", "/y" },
                { "/", "y", "/y" },            { "/x", "../y", "/x/../y" }, { "rel", "a/b", "rel/a/b" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *got = aj_path_join(cases[i].a, cases[i].b);
                cr_assert_not_null(got);
                cr_expect_str_eq(got, cases[i].want, "'%s' + '%s'", cases[i].a, cases[i].b);
                free(got);
        }
}

Test(format, asprintf)
{
        char *s = (char *)"untouched";
        cr_assert_eq(aj_asprintf(&s, "%s-%d", "a", 7), 0);
        cr_expect_str_eq(s, "a-7");
        free(s);
}

Test(format, error_message)
{
        char *err = NULL;
        cr_expect_eq(aj_error_message(&err, -EINVAL, "bad '%s'", "x"), -EINVAL);
        cr_expect_str_eq(err, "bad 'x'");
        free(err);
        /* A caller that wants no message passes NULL and still gets r back. */
        cr_expect_eq(aj_error_message(NULL, -ENOENT, "unused %d", 1), -ENOENT);
        errno = EACCES;
        err = NULL;
        cr_expect_eq(aj_error_message(&err, -EACCES, "open: %m"), -EACCES);
        cr_expect_str_eq(err, "open: Permission denied");
        free(err);
}
