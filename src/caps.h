/* SPDX-License-Identifier: Apache-2.0 */
/* Capabilities in the jail child (libcap's -1/errno converted to -errno here). */
#pragma once

/* After setresuid() with PR_SET_KEEPCAPS: effective := permitted, so setup can continue. */
int aj_caps_raise_effective(void);

/* Drop everything: bounding set, ambient, then effective/permitted/inheritable.
 * Afterwards /proc/self/status shows all five sets as zero. */
int aj_caps_drop_all(void);
