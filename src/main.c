/* SPDX-License-Identifier: Apache-2.0 */
#include "commands.h"

int main(int argc, char **argv) { return aj_commands_main(argc - 1, argv + 1); }
