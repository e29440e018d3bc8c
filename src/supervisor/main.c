/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bulkhead: the system's command, one sub-command per job. This file only dispatches; each
 * sub-command lives in a file of its own (commands.h).
 */
#include "supervisor/commands.h"

#include <stdio.h>
#include <string.h>

/** A sub-command: what --help lists and what main() hands the rest of the line to. */
struct subcommand {
    const char *name;                  /**< The word after "bulkhead". */
    const char *args;                  /**< Its arguments, for --help. */
    const char *summary;               /**< One line for --help. */
    int (*run)(int argc, char **argv); /**< Gets argv from its own name on; the exit status. */
};

static const struct subcommand subcommands[] = {
    {"check", "FILE", "validate a system description and report every error", cmd_check},
    {"up", "FILE", "start the described system and supervise it", cmd_up},
    {"ctl", "COMMAND [NAME]", "list, status, start, stop, restart, kill, console, apply", cmd_ctl},
    {"down", "", "stop the running system, VMs first", cmd_down},
};

#define NR_SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *f)
{
    fputs("usage: bulkhead COMMAND [ARGS...]\n"
          "       bulkhead COMMAND --help | --help | --version\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < NR_SUBCOMMANDS; i++) {
        char head[48];
        snprintf(head, sizeof(head), "%s %s", subcommands[i].name, subcommands[i].args);
        fprintf(f, "  %-20s %s\n", head, subcommands[i].summary);
    }
    fputs("A system description is one YAML file: docs/system-description.md.\n"
          "Exit status: 0 success, 1 failure, 2 bad usage or an invalid description.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("bulkhead: error: no command given (see bulkhead --help)\n", stderr);
        return BULKHEAD_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        puts("bulkhead " BULKHEAD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < NR_SUBCOMMANDS; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "bulkhead: error: unknown command '%s' (see bulkhead --help)\n", argv[1]);
    return BULKHEAD_EXIT_USAGE;
}
