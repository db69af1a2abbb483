/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the parts of the profile module share (src/profile.c, profile-schema.c,
 * profile-schema-broker.c, profile-load.c); nothing outside them includes this. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host-id-pool.h"
#include "profile.h"
#include "util/error.h"
#include "util/json-locate.h"
#include "util/macros.h"

#define MAX_CHAIN 8 /* files in one `extends` chain */
#define MAX_FILE_SIZE (1024 * 1024)
#define MAX_ENTRIES 1024 /* per array or object a profile controls */
#define MAX_STRING 4096  /* paths, descriptions, environment values */
#define MAX_KEY_DEPTH 8
#define MAX_ID 4294967294ULL /* (uid_t)-1 means "no id" to the kernel */
#define MAX_CPU 1024.0

#define DEFAULT_HOSTNAME "agentjail"
#define DEFAULT_HOME "/home/agent"
#define DEFAULT_ID 1000
/* What user.host_uid/host_gid read as when unset (`profile show`, the digest): the first id
 * of the pool that root-started runs of such a profile take ids of their own from
 * (src/host-id-pool.h; host_ids_set says which). */
#define DEFAULT_HOST_ID ((uid_t)AJ_HOST_ID_POOL_FIRST)
#define DEFAULT_WALL_GRACE_NS (10ULL * 1000000000ULL)
#define DEFAULT_ALERT_TIMEOUT_NS (10ULL * 1000000000ULL)
#define MAX_ALERT_TIMEOUT_NS (3600ULL * 1000000000ULL)
#define DEFAULT_APPROVAL_TIMEOUT_NS (15ULL * 60ULL * 1000000000ULL)
#define MAX_APPROVAL_TIMEOUT_NS (7ULL * 86400ULL * 1000000000ULL)
#define MAX_BROKER_NAME 256 /* tool patterns, model names: as the broker protocol allows */

/* jansson's own json_decrefp() accepts NULL. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* One file of a chain. */
typedef struct {
        char *file; /* as given or found, for messages */
        char *real; /* canonical path; NULL for a text that has no file */
        char *text;
        json_t *root;
} Source;

void source_done(Source *s);

/* Where a value is: keys and "[N]" indexes, for both the message and aj_json_locate(). */
typedef struct {
        const Source *src;
        AjError *err;
        const char *elem[MAX_KEY_DEPTH + 1];
        char index[MAX_KEY_DEPTH][24];
        size_t n;
} Check;

typedef int (*CheckFn)(Check *c, json_t *v);
typedef struct {
        const char *key;
        CheckFn check;
} Field;

/* ---- profile-schema.c: the Check machinery, value checks, the schema ---- */

void check_push_key(Check *c, const char *key);
void check_push_index(Check *c, size_t i);
void check_pop(Check *c);
/* Sets "FILE:LINE:COL: KEY.PATH: message" and returns -EINVAL. */
_printf_(3, 4) int check_fail(Check *c, AjJsonLocateWhat what, const char *fmt, ...);
/* A short rendering of a value for "got ..." in messages. */
const char *describe_value(const json_t *v, char *buf, size_t size);
#define GOT(v) describe_value((v), (char[80]){}, 80)

const char *path_problem(const char *p, bool home_ok);
int bind_parse(const char *s, AjBind *ret);
bool is_profile_name(const char *s);
bool looks_like_path(const char *s);
int json_size(const json_t *v, uint64_t *ret);
int json_duration(const json_t *v, uint64_t *ret);
int check_object(Check *c, json_t *v, const Field *fields);
int check_string(Check *c, json_t *v);
int check_bool(Check *c, json_t *v);
int check_string_array(Check *c, json_t *v, CheckFn each);
int check_duration(Check *c, json_t *v);
/* allow_degraded's names and AJ_DEGRADE_* flags. */
typedef struct {
        const char *name;
        unsigned flag;
} DegradeName;
extern const DegradeName degrade_names[];
extern const size_t n_degrade_names;
unsigned degrade_flag(const char *s);
int check_root(Check *c, json_t *v);

/* ---- profile-schema-broker.c: meters, tools, approvals, prices, on_breach, alert, logs ---- */

int check_int_range(Check *c, json_t *v, json_int_t min, json_int_t max);
int check_meters(Check *c, json_t *v);
int check_tools(Check *c, json_t *v);
int check_approvals(Check *c, json_t *v);
int check_prices(Check *c, json_t *v);
int check_on_breach(Check *c, json_t *v);
int check_alert(Check *c, json_t *v);
int check_rollback(Check *c, json_t *v);
int check_logs(Check *c, json_t *v);

/* ---- profile-schema-llm.c: the llm keys, their conversion ---- */

int check_llm(Check *c, json_t *v);
int llm_from_json(json_t *root, AjProfile *p);
int llm_to_json(const AjProfile *p, json_t *root);
void llm_free(AjProfile *p);

/* ---- profile-load.c ---- */

json_t *get_path(json_t *root, const char *a, const char *b);

/* ---- profile.c: conversion ---- */

int profile_new_defaults(AjProfile **ret);
int profile_from_json(json_t *root, AjProfile *p);
