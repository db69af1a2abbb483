/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Dispatch argv (without the program name) to a command; returns the exit status. */
int aj_commands_main(int argc, char **argv);
