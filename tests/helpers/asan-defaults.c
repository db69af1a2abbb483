/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Linked into agentjail in an AddressSanitizer build only (meson.build; scripts/asan): the
 * defaults its runtime reads before ASAN_OPTIONS, which overrides them.
 *
 * LeakSanitizer's check at exit stops the process's threads by ptrace-attaching them from a
 * helper thread; inside a jail the seccomp filter denies ptrace, and LSan then dies with a
 * "fatal error" and exit status 1: `agentjail meter` (an eval case's tool call) failed in
 * every jail. A jail clears the environment (only a profile's env.pass and env.set reach
 * it), so no ASAN_OPTIONS reaches a process in one, and this default is what it runs with:
 * no leak check there. Processes on the host run with scripts/asan's ASAN_OPTIONS
 * (detect_leaks=1): their leaks are still findings. The filter stays as it is.
 */
const char *__asan_default_options(void);

__attribute__((used, visibility("default"))) const char *__asan_default_options(void) { return "detect_leaks=0"; }
