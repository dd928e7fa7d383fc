/* metrics: see metrics.h. */
#include "core/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_WRITERS 32

static struct {
    metrics_writer_fn fn;
    void *ctx;
} writers[MAX_WRITERS];
static int nwriters;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static time_t start_time;

/* Upper bounds in microseconds; the last bucket is +Inf. Requests take
 * milliseconds; conversions, emails and event streams take seconds to
 * minutes (a stream lasts up to 300 s, a long conversion longer). */
static const uint64_t bounds_us[METRICS_BUCKETS - 1] = {
    1000,    5000,    10000,    25000,    50000,    100000,    250000,     500000,
    1000000, 5000000, 10000000, 30000000, 60000000, 300000000, 1800000000,
};

int metrics_register(metrics_writer_fn fn, void *ctx)
{
    int rc = -1;
    pthread_mutex_lock(&lock);
    if (start_time == 0)
        start_time = time(NULL);
    if (nwriters < MAX_WRITERS) {
        writers[nwriters].fn = fn;
        writers[nwriters].ctx = ctx;
        nwriters++;
        rc = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void metrics_unregister(void *ctx)
{
    pthread_mutex_lock(&lock);
    int j = 0;
    for (int i = 0; i < nwriters; i++) {
        if (writers[i].ctx != ctx)
            writers[j++] = writers[i];
    }
    nwriters = j;
    pthread_mutex_unlock(&lock);
}

static void write_process(FILE *out)
{
    long rss_pages = 0, size_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &size_pages, &rss_pages) != 2)
            rss_pages = 0;
        fclose(f);
    }
    fprintf(out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            "process_resident_memory_bytes %ld\n"
            "# HELP process_start_time_seconds Start time of the process since the epoch.\n"
            "# TYPE process_start_time_seconds gauge\n"
            "process_start_time_seconds %lld\n",
            rss_pages * sysconf(_SC_PAGESIZE), (long long)start_time);
}

char *metrics_render(size_t *len)
{
    char *buf = NULL;
    FILE *out = open_memstream(&buf, len);
    if (out == NULL)
        return NULL;
    /* Writers run under the lock so metrics_unregister() can wait for them. */
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nwriters; i++)
        writers[i].fn(out, writers[i].ctx);
    pthread_mutex_unlock(&lock);
    write_process(out);
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

void metrics_histogram_observe(struct metrics_histogram *h, uint64_t us)
{
    int i = 0;
    while (i < METRICS_BUCKETS - 1 && us > bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void metrics_histogram_write(FILE *out, const char *name, const char *labels,
                             const struct metrics_histogram *h)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cumulative = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < METRICS_BUCKETS - 1)
            fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                    (double)bounds_us[i] / 1e6, (unsigned long long)cumulative);
        else
            fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                    (unsigned long long)cumulative);
    }
    fprintf(out, "%s_sum{%s} %.6f\n", name, labels,
            (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
    fprintf(out, "%s_count{%s} %llu\n", name, labels,
            (unsigned long long)atomic_load_explicit(&h->count, memory_order_relaxed));
}
