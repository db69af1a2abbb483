/* SPDX-License-Identifier: Apache-2.0 */
/* SOCKS5 as the egress proxy reads it (pure): the greeting and a CONNECT request. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "net.h"

typedef struct {
        char host[AJ_NET_HOST_MAX + 1]; /* name, or address as text */
        uint16_t port;
        uint8_t atyp; /* 1, 3 or 4 */
        size_t consumed;
} AjSocksRequest;

/* Greeting: >0 bytes consumed (no-auth offered), -EAGAIN need more, -EPROTO bad version,
 * -EPERM no acceptable method. */
int aj_socks_parse_greeting(const uint8_t *buf, size_t len);
/* Request: 0 ok, -EAGAIN need more, otherwise a SOCKS reply code (1..8) with why. */
int aj_socks_parse_request(const uint8_t *buf, size_t len, AjSocksRequest *ret, uint8_t *ret_rep, const char **ret_why);
