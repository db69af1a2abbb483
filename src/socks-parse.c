/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy's SOCKS5 parsers (see socks-parse.h). */
#include "socks-parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/macros.h"

int aj_socks_parse_greeting(const uint8_t *buf, size_t len)
{
        if (len < 1)
                return -EAGAIN;
        if (buf[0] != 5)
                return -EPROTO;
        if (len < 2)
                return -EAGAIN;
        size_t n = buf[1];
        if (n == 0)
                return -EPERM;
        if (len < 2 + n)
                return -EAGAIN;
        for (size_t i = 0; i < n; i++)
                if (buf[2 + i] == 0)
                        return (int)(2 + n);
        return -EPERM;
}

int aj_socks_parse_request(const uint8_t *buf, size_t len, AjSocksRequest *ret, uint8_t *ret_rep, const char **ret_why)
{
        AjSocksRequest req = {};
        size_t need;

        if (len < 5)
                return -EAGAIN;
        if (buf[0] != 5) {
                *ret_rep = 0x01;
                *ret_why = "bad SOCKS version in request";
                return -EINVAL;
        }
        if (buf[2] != 0) {
                *ret_rep = 0x01;
                *ret_why = "reserved byte not zero";
                return -EINVAL;
        }
        req.atyp = buf[3];
        switch (buf[3]) {
        case 1:
                need = 4 + 4 + 2;
                break;
        case 3:
                need = 4 + 1 + (size_t)buf[4] + 2;
                break;
        case 4:
                need = 4 + 16 + 2;
                break;
        default:
                *ret_rep = 0x08;
                *ret_why = "address type not supported";
                return -EINVAL;
        }
        if (buf[1] != 1) {
                *ret_rep = 0x07;
                *ret_why = "only CONNECT is supported";
                return -EINVAL;
        }
        if (len < need)
                return -EAGAIN;
        if (buf[3] == 1)
                inet_ntop(AF_INET, buf + 4, req.host, sizeof(req.host));
        else if (buf[3] == 4)
                inet_ntop(AF_INET6, buf + 4, req.host, sizeof(req.host));
        else {
                /* A name the allowlist could judge, or nothing: never cut to fit (a longer
                 * name truncated to 253 bytes is another name, maybe an allowed one). */
                size_t n = buf[4];
                if (n == 0 || n > AJ_NET_HOST_MAX) {
                        *ret_rep = 0x02;
                        *ret_why = n == 0 ? "empty host name" : "host name longer than 253 bytes";
                        return -EPERM;
                }
                for (size_t i = 0; i < n; i++) {
                        uint8_t ch = buf[5 + i];
                        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_') {
                                *ret_rep = 0x02;
                                *ret_why = ch == 0 ? "NUL in host name" : "invalid character in host name";
                                return -EPERM;
                        }
                }
                memcpy(req.host, buf + 5, n);
                req.host[n] = 0;
        }
        req.port = (uint16_t)((buf[need - 2] << 8) | buf[need - 1]);
        req.consumed = need;
        *ret = req;
        return 0;
}
