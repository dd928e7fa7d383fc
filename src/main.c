/* vid2mp3: one binary, many commands; this file only dispatches. */
#include "auth/auth.h"
#include "cli/cli.h"
#include "converter/converter.h"
#include "core/service.h"
#include "gateway/gateway.h"
#include "notifier/notifier.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
    {"auth", auth_main},         {"gateway", gateway_main},     {"converter", converter_main},
    {"convert", convert_main},   {"notifier", notifier_main},   {"all", all_main},
    {"user", cli_user_main},     {"migrate", cli_migrate_main}, {"gc", cli_gc_main},
    {"config", cli_config_main}, {"version", cli_version_main}, {"probe", cli_probe_main},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        cli_usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "--version") == 0)
        name = "version";
    if (sodium_init() < 0) {
        fputs("vid2mp3: libsodium failed to initialise\n", stderr);
        return EXIT_FAILURE_RUNTIME;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "vid2mp3: unknown command '%s'\n\n", name);
    cli_usage(stderr);
    return EXIT_USAGE;
}
