/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the gateway sends a provider's key (docs/gateway.md, "The key's reach"): only to
 * what an agent needs of the provider, so that the key is not the agent's to read the
 * account's files, stored responses and batches with, or to act as there. By default:
 *
 *   - the model calls the gateway meters for the provider's API: a POST to a path its
 *     classifier names (aj_llm_api_from_path(): /v1/messages, /v1/messages/count_tokens,
 *     /v1/chat/completions, /v1/responses);
 *   - GET and HEAD of the model list and of one model: /v1/models, /v1/models/ID;
 *   - HEAD / (Claude Code's check, at startup, that its base URL answers: no body, no data).
 *
 * Besides those, the profile's llm.providers.NAME.paths: "METHOD /path" rules the operator
 * opens deliberately, METHOD an HTTP method or "*" for any, a path segment that is '*'
 * alone matching any one segment (any file's content: GET /v1/files/STAR/content). A
 * request's path is matched as the gateway serves it: canonical (aj_gw_target_not_canonical():
 * no percent-escapes, dot or empty segments; anything else matches nothing), its query and
 * one trailing '/' aside, ignoring letter case as the classifier does. The method is matched
 * exactly. Pure.
 */
#pragma once

#include <stdbool.h>

#include "gateway/gateway.h"

/* Rules a provider's paths may hold, and the bytes of one. */
#define AJ_KEY_PATHS_MAX 64
#define AJ_KEY_PATH_RULE_MAX 256

/* NULL when `rule` is a valid "METHOD /path", else why not (for the profile's message). */
const char *aj_key_path_rule_problem(const char *rule);
/* Whether a valid `rule` lets `method` `path` (the request's, under the provider's prefix,
 * query included) through. */
bool aj_key_path_rule_matches(const char *rule, const char *method, const char *path);
/* Whether the default set lets it through, for a provider of `api`. */
bool aj_key_path_default(AjGatewayApi api, const char *method, const char *path);
/* The default set, then `rules` (NULL-terminated, may be NULL). */
bool aj_key_path_allowed(AjGatewayApi api, char *const *rules, const char *method, const char *path);
