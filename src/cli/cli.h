/* cli: the commands that are not services (DESIGN §1), and the help text. */
#ifndef VID2MP3_CLI_H
#define VID2MP3_CLI_H

#include <stdio.h>

/* Each takes argv from the command name on and returns the exit status. */
int cli_user_main(int argc, char **argv);
int cli_migrate_main(int argc, char **argv);
int cli_gc_main(int argc, char **argv);
int cli_config_main(int argc, char **argv);
int cli_version_main(int argc, char **argv);
int cli_probe_main(int argc, char **argv);

int all_main(int argc, char **argv);

void cli_usage(FILE *out);

#endif
