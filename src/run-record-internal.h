/* SPDX-License-Identifier: Apache-2.0 */
/* What the run record's files share: typed reads of JSON members whose errors name the
 * file and the member (run-record.c, run-record-alerts.c). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

/* A JSON record of the run dir, indented, written atomically (rename): only through the
 * typed writers of run-record.h. */
int aj_run_file_write_json(const char *run_dir, const char *name, json_t *doc);
/* The same on one line, for a record that carries what the agent sent (incident.json's
 * request and last events, approval.json's arguments): indentation costs two bytes a level
 * on every line, so an indented record grows with the square of the depth of the agent's
 * JSON (2 GB from 1 MB of deep undo records, before the broker bounded the depth) and
 * with its depth even below that bound; on one line it is as large as what it holds. */
int aj_run_file_write_json_line(const char *run_dir, const char *name, json_t *doc);
/* A JSON record of the run dir, read whole: -ENOENT if absent, -EBADMSG if not JSON; a
 * FIFO, a symlink or anything else not a regular file refused at once (aj_open_regular_at). */
int aj_run_file_read_json(const char *run_dir, const char *name, json_t **ret);
/* A failure of that read of `path` with ret_error naming the file when it is there but no
 * record (not JSON, not a regular file); returns r. */
int aj_run_file_read_error(const char *path, int r, AjError *ret_error);

typedef struct {
        const char *path; /* the file, for messages */
        AjError *ret_error;
        int r; /* the first error; later checks are skipped */
} AjTypeCheck;

/* The member `key` of `obj` (named `name` in messages) as a string: NULL when absent, or
 * null when `nullable`; anything else fails the check. */
const char *aj_member_string(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, bool nullable);
/* An object member (NULL when absent, or null if `nullable`). */
json_t *aj_member_object(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, bool nullable);
/* An array member (NULL when absent). */
json_t *aj_member_array(AjTypeCheck *tc, json_t *obj, const char *key, const char *name);
/* A number member: its value in *ret (untouched when absent or null); the JSON value. */
json_t *aj_member_number(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, double *ret);
/* An integer member in [min, max]: *ret untouched when absent or null; true if present. */
bool aj_member_integer(AjTypeCheck *tc, json_t *obj, const char *key, const char *name, json_int_t min, json_int_t max,
                       json_int_t *ret);
