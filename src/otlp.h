/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The event chain as OpenTelemetry log records, in the OTLP/JSON encoding of an
 * ExportLogsServiceRequest (what a collector's /v1/logs accepts):
 *
 *   agentjail logs RUN --otlp | curl -H 'Content-Type: application/json' \
 *           --data-binary @- http://collector:4318/v1/logs
 *
 * One record per event: timeUnixNano from "ts", eventName and body the event type,
 * severity from the type (see aj_otlp_severity), every other field an attribute under
 * its own name (the gen_ai.* fields already follow the GenAI semantic conventions;
 * seq, prev and run become agentjail.seq, agentjail.prev, agentjail.run.id).
 */
#pragma once

#include <jansson.h>

/* OTel severity number and text for an event: 17 ERROR (cap.breach, oom,
 * supervisor.lost, watchdog.lost, launch.error, freeze.failed, net.proxy.failed), 13 WARN
 * (denials, deny/breach verdicts, approvals not approved, freeze, kill, quarantine,
 * limits, degraded protections, alert failures, watchdog.restarted, events.torn), 9 INFO
 * otherwise. */
int aj_otlp_severity(json_t *ev, const char **ret_text);
/* One event object -> a LogRecord (new reference), NULL if it is not an event. */
json_t *aj_otlp_log_record(json_t *ev);
/* The request around `records` (an array, reference stolen): resource attributes
 * service.name=agentjail, agentjail.run.id, agentjail.run.name and agentjail.profile
 * (NULLs left out), one scope "agentjail" with `version`. */
json_t *aj_otlp_logs_request(const char *run_id, const char *run_name, const char *profile, const char *version,
                             json_t *records);
/* The same request as text around its records, for a caller that prints them one at a
 * time: *ret_head ends with the records array's '[', *ret_tail closes it and the request.
 * A run's chain may hold tens of millions of the agent's values (undo records and
 * arguments of tiny values), each a record's attribute object: held together they are
 * ~175 times the chain's bytes (6 GB for a 64 MiB chain), one at a time a few MiB. */
int aj_otlp_logs_request_frame(const char *run_id, const char *run_name, const char *profile, const char *version,
                               char **ret_head, char **ret_tail);
