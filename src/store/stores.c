/* stores: see stores.h. */
#include "store/stores.h"

#include <string.h>

int stores_open(const struct config *cfg, struct stores *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if ((s->blobs = blobs_open(cfg, err, errlen)) == NULL ||
        (s->jobs = jobs_open(cfg, err, errlen)) == NULL ||
        (s->queue = queue_open(cfg, err, errlen)) == NULL) {
        stores_close(s);
        return -1;
    }
    return 0;
}

void stores_close(struct stores *s)
{
    queue_free(s->queue);
    jobs_free(s->jobs);
    blobs_free(s->blobs);
    memset(s, 0, sizeof(*s));
}
