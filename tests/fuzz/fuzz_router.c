/* libFuzzer: request paths against the route patterns the services use. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const patterns[] = {"/login", "/jobs/:id", "/a/:b/c/:d", "/",
                                           "/:a/:b/:c/:d"};
    char *path = malloc(size + 1);
    if (path == NULL)
        return 0;
    memcpy(path, data, size);
    path[size] = '\0';
    for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        struct router_params p;
        if (router_match(patterns[i], path, &p) == 1) {
            for (int k = 0; k < p.n; k++) {
                size_t n = strlen(p.p[k].value);
                if (n == 0 || n >= ROUTER_PARAM_MAX || strchr(p.p[k].value, '/') != NULL)
                    abort();
            }
        }
    }
    free(path);
    return 0;
}
