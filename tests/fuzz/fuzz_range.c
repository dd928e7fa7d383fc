/* libFuzzer: Range headers of downloads against files of several sizes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t sizes[] = {0, 1, 2, 500, 1000, UINT64_MAX - 1, UINT64_MAX};
    char *header = malloc(size + 1);
    if (header == NULL)
        return 0;
    memcpy(header, data, size);
    header[size] = '\0';
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t first = 0, last = 0;
        switch (range_parse(header, sizes[i], &first, &last)) {
        case RANGE_OK:
            /* A range to send must lie inside the file. */
            if (first > last || last >= sizes[i])
                abort();
            break;
        case RANGE_NONE:
        case RANGE_UNSATISFIABLE:
            break;
        default:
            abort();
        }
    }
    free(header);
    return 0;
}
