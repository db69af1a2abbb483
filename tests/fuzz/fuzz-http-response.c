/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy's response side: the upstream's head rewritten for the client, then, when it
 * says chunked, the rest scanned as a chunked body, in two reads. The first byte picks a
 * HEAD request (bit 0) and where the body is split (the rest). */
#include <stdlib.h>

#include "fuzz.h"
#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 64 * 1024)
                return 0;
        bool head_request = data[0] & 1;
        unsigned split = data[0] >> 1;
        const char *buf = (const char *)data + 1;
        size_t len = size - 1;

        AjHttpResponse resp = { 0 };
        if (aj_http_rewrite_response(buf, len, head_request, &resp) != 0)
                return 0;
        free(resp.head);
        if (resp.consumed > len)
                abort(); /* the parser claims more than it was given */
        if (resp.body != AJ_HTTP_BODY_CHUNKED)
                return 0;

        const char *body = buf + resp.consumed;
        size_t rest = len - resp.consumed;
        size_t first = rest < split ? rest : split;
        AjHttpChunked scan = { 0 };
        bool done = false;
        ssize_t n = aj_http_chunked_scan(&scan, body, first, &done);
        if (n < 0 || done) {
                if (n > (ssize_t)first)
                        abort();
                return 0;
        }
        if ((size_t)n != first)
                abort(); /* not done: every byte given belongs to the body */
        n = aj_http_chunked_scan(&scan, body + first, rest - first, &done);
        if (n > (ssize_t)(rest - first))
                abort();
        return 0;
}
