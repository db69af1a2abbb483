/* SPDX-License-Identifier: Apache-2.0 */
/* `agentjail mcp [--name SERVER] -- CMD [ARG...]`: an MCP server behind the broker. */
#pragma once

#include "mcp.h"
#include "util/error.h"

typedef struct {
        bool help;
        char server[AJ_MCP_MAX_SERVER + 1];
        char **argv; /* CMD ARG..., borrowed from the caller's argv */
} AjMcpCmd;

/* Pure: argv[0] is "mcp". */
int aj_mcp_cmd_parse(int argc, char **argv, AjMcpCmd *ret, AjError *ret_error);
int aj_cmd_mcp(int argc, char **argv);
