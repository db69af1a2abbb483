/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy's request head parser (the agent's side), whole and in every prefix a read
 * could deliver first. */
#include "fuzz.h"
#include "proxy.h"

static void parse(const uint8_t *data, size_t size)
{
        AjHttpRequest req = { 0 };
        int status = 0;
        const char *why = NULL;
        (void)aj_http_parse_request((const char *)data, size, &req, &status, &why);
        aj_http_request_done(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 64 * 1024)
                return 0;
        parse(data, size);
        /* A short read: the parser must ask for more or decide on what it has. */
        if (size > 1)
                parse(data, size / 2);
        return 0;
}
