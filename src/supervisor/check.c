/* SPDX-License-Identifier: BSD-2-Clause */
/* bulkhead check FILE: the description's parser and validator, against this host. */
#include "supervisor/commands.h"
#include "supervisor/desc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char check_usage[] =
    "usage: bulkhead check FILE\n"
    "Validates a system description (docs/system-description.md) against this host: its\n"
    "memory and CPUs, and the files it names. Prints 'FILE: ok: ...' and exits 0, or prints\n"
    "every error as FILE:LINE:COL: error: MESSAGE and exits 2.\n";

int cmd_check(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(check_usage, stdout);
        return 0;
    }
    if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0')) {
        fprintf(stderr, "bulkhead: error: check takes one FILE (see bulkhead check --help)\n");
        return BULKHEAD_EXIT_USAGE;
    }
    const char *file = argv[1];
    struct desc_host host;
    /* Without /proc/meminfo the memory is not checked; the rest still is. */
    (void)desc_host_probe(&host);
    struct desc *d;
    int r = desc_load(file, &host, &d);
    if (r == -ENOMEM) {
        fprintf(stderr, "bulkhead: error: out of memory\n");
        return 1;
    }
    if (d == NULL) {
        if (r == -EFBIG)
            fprintf(stderr, "bulkhead: error: %s: larger than %u bytes; not a description\n", file,
                    DESC_MAX_FILE_SIZE);
        else if (r == -EINVAL)
            fprintf(stderr, "bulkhead: error: %s: not a regular file\n", file);
        else
            fprintf(stderr, "bulkhead: error: cannot read %s: %s\n", file, strerror(-r));
        return BULKHEAD_EXIT_USAGE;
    }
    if (r == 0)
        printf("%s: ok: %u VM%s, %u backend%s, %u link%s\n", file, d->nr_vms,
               d->nr_vms == 1 ? "" : "s", d->nr_backends, d->nr_backends == 1 ? "" : "s",
               d->nr_links, d->nr_links == 1 ? "" : "s");
    else
        desc_print_errors(d, stderr);
    desc_free(d);
    return r == 0 ? 0 : BULKHEAD_EXIT_USAGE;
}
