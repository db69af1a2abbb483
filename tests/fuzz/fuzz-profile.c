/* SPDX-License-Identifier: Apache-2.0 */
/* The profile parser: one JSON text as a profile, then its resolved form as JSON. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Profiles are files an operator writes; 64 KiB is far more than any needs. */
        if (size > 64 * 1024)
                return 0;
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        AjProfile *p = NULL;
        AjError err = { 0 };
        if (aj_profile_parse(text, "fuzz.json", &p, &err) == 0) {
                free(aj_profile_to_json(p));
                aj_profile_free(p);
        }
        aj_error_clear(&err);
        free(text);
        return 0;
}
