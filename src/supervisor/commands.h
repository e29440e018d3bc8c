/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file commands.h
 * @brief The sub-commands of the bulkhead program; main.c only dispatches to them.
 *
 * Each one gets the arguments after its own name (argv[0] is the sub-command's name) and
 * returns the program's exit status: 0 success, 1 a failure while running, 2 bad usage or
 * input after one line (or one line per problem) on stderr.
 */
#ifndef BULKHEAD_SUPERVISOR_COMMANDS_H
#define BULKHEAD_SUPERVISOR_COMMANDS_H

/** Exit status of a sub-command for bad usage or an invalid description. */
#define BULKHEAD_EXIT_USAGE 2

/**
 * `bulkhead check FILE`: parse and validate a system description against this host and
 * print "FILE: ok: N VMs, M backends, K links", or every error as FILE:LINE:COL lines.
 * @param argc argument count, the sub-command's name included.
 * @param argv the arguments.
 * @return 0 valid, 2 invalid or bad usage, 1 out of memory.
 */
int cmd_check(int argc, char **argv);

/**
 * `bulkhead up FILE`: start the described system and supervise it (super.h) until it is
 * brought down; in the foreground with the VMs' consoles multiplexed on the terminal.
 * @param argc argument count, the sub-command's name included.
 * @param argv the arguments.
 * @return 0 stopped, 1 failure, 2 bad usage or an invalid description (nothing started).
 */
int cmd_up(int argc, char **argv);

/**
 * `bulkhead ctl COMMAND`: one request to a running supervisor (api.h), its answer printed.
 * @param argc argument count, the sub-command's name included.
 * @param argv the arguments.
 * @return 0 done, 1 refused or unreachable, 2 bad usage or an invalid description.
 */
int cmd_ctl(int argc, char **argv);

/**
 * `bulkhead down`: stop a running system and wait until its supervisor has ended.
 * @param argc argument count, the sub-command's name included.
 * @param argv the arguments.
 * @return 0 stopped, 1 not stopped in time or unreachable, 2 bad usage.
 */
int cmd_down(int argc, char **argv);

#endif
