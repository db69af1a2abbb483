/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/format.h"

int aj_error_setv(AjError *e, int err, const char *fmt, va_list ap)
{
        if (!e)
                return err;
        char *m = NULL;
        int r = aj_vasprintf(&m, fmt, ap);
        free(e->message);
        e->message = m;
        e->err = r < 0 ? r : err;
        return e->err;
}

int aj_error_set(AjError *e, int err, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = aj_error_setv(e, err, fmt, ap);
        va_end(ap);
        return r;
}

int aj_error_prefix(AjError *e, const char *fmt, ...)
{
        if (!e)
                return -EINVAL;
        if (e->err == 0)
                e->err = -EINVAL;
        char *prefix = NULL, *joined = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = aj_vasprintf(&prefix, fmt, ap);
        va_end(ap);
        if (r >= 0)
                r = aj_asprintf(&joined, "%s: %s", prefix, aj_error_text(e, 0));
        free(prefix);
        if (r < 0)
                return e->err; /* the context is lost, the inner message is kept */
        free(e->message);
        e->message = joined;
        return e->err;
}

const char *aj_error_text(const AjError *e, int r)
{
        if (e && e->message)
                return e->message;
        int err = e && e->err < 0 ? e->err : r;
        return err < 0 ? strerror(-err) : "";
}

void aj_error_clear(AjError *e)
{
        if (!e)
                return;
        free(e->message);
        *e = (AjError){};
}
