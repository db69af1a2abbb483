/* SPDX-License-Identifier: Apache-2.0 */
/* Values (object keys included) and depth of a jansson DOM, as aj_json_scan() counts them in
 * text: the oracle of unit-gateway-usage and of the escape fuzz target. */
#pragma once

#include <jansson.h>

#include "util/json-scan.h"

static inline void json_dom_shape(json_t *v, unsigned depth, AjJsonShape *sh)
{
        const char *k;
        json_t *e;
        size_t i;
        sh->values++;
        if (json_is_object(v) || json_is_array(v))
                depth++;
        if (depth > sh->depth)
                sh->depth = depth;
        if (json_is_object(v))
                json_object_foreach (v, k, e) {
                        sh->values++;
                        json_dom_shape(e, depth, sh);
                }
        else if (json_is_array(v))
                json_array_foreach (v, i, e)
                        json_dom_shape(e, depth, sh);
}
