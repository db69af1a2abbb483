/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "caps.h"
#include "util/macros.h"

static void cap_freep(cap_t *c)
{
        if (*c)
                cap_free(*c);
}

int aj_caps_raise_effective(void)
{
        _cleanup_(cap_freep) cap_t c = cap_get_proc();
        if (!c)
                return negative_errno();
        cap_value_t last = cap_max_bits();
        for (cap_value_t v = 0; v < last; v++) {
                cap_flag_value_t permitted;
                if (cap_get_flag(c, v, CAP_PERMITTED, &permitted) < 0)
                        continue;
                if (permitted == CAP_SET && cap_set_flag(c, CAP_EFFECTIVE, 1, &v, CAP_SET) < 0)
                        return negative_errno();
        }
        if (cap_set_proc(c) < 0)
                return negative_errno();
        return 0;
}

int aj_caps_drop_all(void)
{
        /* The bounding set first: dropping it needs CAP_SETPCAP, which goes with the rest. */
        cap_value_t last = cap_max_bits();
        for (cap_value_t v = 0; v < last; v++)
                if (prctl(PR_CAPBSET_DROP, v, 0, 0, 0) < 0 && errno != EINVAL)
                        return -errno;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        _cleanup_(cap_freep) cap_t c = cap_init(); /* all clear */
        if (!c)
                return negative_errno();
        if (cap_set_proc(c) < 0)
                return negative_errno();
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                return -errno;
        return 0;
}
