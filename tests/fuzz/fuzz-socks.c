/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy's SOCKS5 side: a greeting, then a request in what follows it. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > 4096)
                return 0;
        int r = aj_socks_parse_greeting(data, size);
        size_t off = r > 0 ? (size_t)r : 0;
        if (off > size)
                abort();

        AjSocksRequest req;
        uint8_t rep = 0;
        const char *why = NULL;
        memset(&req, 0, sizeof(req));
        r = aj_socks_parse_request(data + off, size - off, &req, &rep, &why);
        if (r == 0 && (req.consumed > size - off || memchr(req.host, '\0', sizeof(req.host)) == NULL))
                abort(); /* consumed past the input, or an unterminated host */
        return 0;
}
