/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The broker: the per-run Unix socket the jail talks to ($AGENTJAIL_BROKER).
 * Runs in the supervisor's event loop: aj_broker_fd() is an epoll fd that is
 * readable when there is work, aj_broker_dispatch() does all of it without
 * blocking. The protocol is in include/agentjail/broker.h and
 * docs/broker-protocol.md. Every event is emitted (hooks->emit) before the
 * reply it belongs to is queued; with hooks->hold/commit, a dispatch's events are
 * written with one write(2) before any of its replies is sent (group commit).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hooks.h"
#include "meter.h"
#include "util/macros.h"

typedef struct AjBroker AjBroker;

/* Creates the listening socket at `socket_path` (its directory exists; a stale socket
 * there is replaced), mode 0600, owned by owner_uid/owner_gid (pass -1 to leave it).
 * `meter` and `hooks` are borrowed and must outlive the broker. */
int aj_broker_new(const char *socket_path, uid_t owner_uid, gid_t owner_gid, AjMeter *meter, const AjHooks *hooks,
                  AjBroker **ret);
int aj_broker_fd(AjBroker *b);
/* Accepts, reads, answers and flushes whatever is ready. Never blocks. Returns 0, or a
 * negative errno only for a failure of the broker itself (its epoll fd). */
int aj_broker_dispatch(AjBroker *b);
size_t aj_broker_connections(const AjBroker *b);
/* Allowed tool calls without a tool_result yet, oldest first: an array of
 * {gen_ai.tool.call.id, gen_ai.tool.name, state, arguments_sha256, since, age_s}.
 * At most 256 are tracked; _dropped() counts the older ones let go. NULL without memory. */
json_t *aj_broker_in_flight(const AjBroker *b);
uint64_t aj_broker_in_flight_dropped(const AjBroker *b);
/* Closes every connection and the socket, unlinks the socket path. Accepts NULL. */
void aj_broker_free(AjBroker *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(AjBroker *, aj_broker_free);

/* Approvals: tool calls whose name matches one of `globs` (with '*') are held, without a
 * reply and with their meter reservation kept, until aj_broker_decide() or `timeout_ns`
 * (0: AJ_BROKER_APPROVAL_TIMEOUT_NS), when they are denied. A caller that disconnects
 * cancels its held calls. Events: tool.request + approval.requested when held;
 * approval + tool.verdict when decided (or approval "cancelled"). */
#define AJ_BROKER_APPROVAL_TIMEOUT_NS (15 * 60 * 1000000000ull)
/* tool_result and tokens reports (each an event): a burst of 10 s worth, then `per_sec`
 * (profile logs.reports_per_sec); more are answered with error "rate_limited", not
 * recorded, and counted (the next recorded report carries "suppressed"). 0: no limit. */
void aj_broker_set_report_rate(AjBroker *b, uint64_t per_sec);
/* `check` requests are read-only, but an agent asking them probes the tools rules: they are
 * counted and summed into a tool.checks event ({checks, allowed, denied, run_checks,
 * denied_names: the first AJ_BROKER_CHECK_SUMMARY_NAMES distinct}) written
 * AJ_BROKER_CHECK_SUMMARY_NS after the first check it counts, so at most one a second
 * however many; one the log refused is kept for the next. This writes the one not yet
 * written (the run's end, before run.exit). */
#define AJ_BROKER_CHECK_SUMMARY_NS 1000000000ull
#define AJ_BROKER_CHECK_SUMMARY_NAMES 8
void aj_broker_flush_checks(AjBroker *b);
uint64_t aj_broker_reports_suppressed(const AjBroker *b);
int aj_broker_set_approvals(AjBroker *b, char *const *globs, size_t n, uint64_t timeout_ns);
/* Approve or deny the held call `call_id`, answering its caller. `digest` (optional) must
 * equal the call's arguments_sha256: the decision binds to the arguments reviewed. `by`
 * names the operator; `reason` (optional) goes to the caller with a denial. On success
 * *ret_call (if given) is {gen_ai.tool.call.id, gen_ai.tool.name, arguments_sha256,
 * decision}. -ENOENT: no such held call; -ESTALE: digest mismatch; ret_error says so. */
int aj_broker_decide(AjBroker *b, const char *call_id, bool approve, const char *digest, const char *by,
                     const char *reason, json_t **ret_call, AjError *ret_error);

/* The run is ending: every held call is cancelled (recorded, nothing answered), so the
 * chain has them before run.exit. aj_broker_free() does the same for any left. */
void aj_broker_cancel_held(AjBroker *b);

/* For tests and the benchmark: the clock used for rate windows (default CLOCK_MONOTONIC). */
void aj_broker_set_clock(AjBroker *b, uint64_t (*now_ns)(void));

/* ---- `agentjail meter ...`, the client that runs inside the jail ---- */

typedef enum {
        AJ_METER_CMD_TOOL,
        AJ_METER_CMD_RESULT,
        AJ_METER_CMD_TOKENS,
        AJ_METER_CMD_USAGE,
        AJ_METER_CMD_HELP,
} AjMeterCmdKind;

/* Exit statuses of `agentjail meter` */
enum {
        AJ_METER_EXIT_OK = 0,     /* allowed, recorded */
        AJ_METER_EXIT_DENIED = 1, /* tool denied by the profile's rules (reason on stderr) */
        AJ_METER_EXIT_USAGE = 2,  /* bad arguments, no broker, protocol error */
        AJ_METER_EXIT_BREACH = 3, /* a cap was crossed: the run is being frozen */
};

typedef struct {
        AjMeterCmdKind kind;
        bool json;
        const char *name;   /* tool */
        const char *args;   /* tool: JSON text, validated */
        const char *id;     /* tool: call id (optional); result: call id */
        const char *status; /* result: "ok" | "error" */
        const char *undo;   /* result: JSON object text, validated */
        const char *model;  /* tokens */
        uint64_t input, output, cached;
} AjMeterCmd;

/* Pure: argv (argv[0] == "meter") -> AjMeterCmd (pointers into argv). -EINVAL with a
 * message in ret_error. */
int aj_meter_cmd_parse(int argc, char **argv, AjMeterCmd *ret, AjError *ret_error);
/* The request line (no '\n') for a parsed command; `id` is the envelope id. */
int aj_meter_cmd_request(const AjMeterCmd *cmd, json_int_t id, char **ret);
/* `agentjail meter ...`; returns the exit status. */
int aj_cmd_meter(int argc, char **argv);
/* One request line to the broker at path, its reply line; -ETIMEDOUT past timeout_ms
 * (negative: wait as long as it takes, e.g. for a held approval). */
int aj_meter_round_trip(const char *path, const char *request, int timeout_ms, char **ret_line);
