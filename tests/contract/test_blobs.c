/*
 * Contract suite for the blobs interface: the same tests against every
 * backend. Usage: test_blobs_contract fs|gridfs. The gridfs run uses the
 * MongoDB-wire server that scripts/test-services.sh started and fails when
 * it is missing. The backend's databases are fixed ("videos", "mp3s"), so
 * each test works with its own owner and ids and removes what it made.
 *
 * Content is generated from (seed, offset), so any range of any file can be
 * checked without keeping the file, and SHA-256 is computed by the test.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "harness.h"

#include <dirent.h>
#include <ftw.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/blobs.h"

#define CH BLOB_CHUNK_SIZE
#define PIECE (64 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static const char *backend;
static char *tmpdir;
static char storedir[600];
static struct blobs *store;
static char owner[64];
static const char *self_exe;

static bool is_gridfs(void)
{
    return strcmp(backend, "gridfs") == 0;
}

static struct blobs *open_backend(const char *dir, char *err, size_t len)
{
    if (is_gridfs())
        return blobs_gridfs_new(th_need_env("VID2MP3_TEST_MONGODB_URI"), err, len);
    return blobs_fs_new(dir, err, len);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------- generated content ---------- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Byte i of file seed is byte i%8 of mix(seed << 40 ^ i/8). */
static void gen(uint64_t seed, int64_t off, void *out, size_t len)
{
    unsigned char *p = out;
    size_t i = 0;
    while (i < len) {
        uint64_t pos = (uint64_t)off + i;
        uint64_t x = mix((seed << 40) ^ (pos / 8));
        for (unsigned b = (unsigned)(pos % 8); b < 8 && i < len; b++, i++)
            p[i] = (unsigned char)(x >> (8 * b));
    }
}

static void hex_sha(crypto_hash_sha256_state *st, char out[65])
{
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(st, d);
    sodium_bin2hex(out, 65, d, sizeof(d));
}

static struct blob_meta meta_for(const char *filename)
{
    struct blob_meta m;
    memset(&m, 0, sizeof(m));
    snprintf(m.owner, sizeof(m.owner), "%s", owner);
    snprintf(m.filename, sizeof(m.filename), "%s", filename);
    snprintf(m.content_type, sizeof(m.content_type), "video/mp4");
    return m;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/* Writes len bytes of seed in pieces of piece bytes; returns the committed
 * metadata and the test's own SHA-256 in sha. max_rss: peak RSS seen (KiB),
 * may be NULL. */
static struct blob_meta put_file(enum blob_bucket b, uint64_t seed, int64_t len, size_t piece,
                                 char sha[65], long *max_rss)
{
    struct blob_meta m = meta_for("generated.bin"), got;
    struct blob_writer *w = NULL;
    assert_int_equal(blobs_open_write(store, b, &m, &w), BLOB_OK);
    unsigned char *buf = malloc(piece);
    assert_non_null(buf);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (int64_t off = 0; off < len;) {
        size_t n = (size_t)(len - off < (int64_t)piece ? len - off : (int64_t)piece);
        gen(seed, off, buf, n);
        crypto_hash_sha256_update(&st, buf, n);
        assert_int_equal(blob_write(w, buf, n), BLOB_OK);
        off += (int64_t)n;
        if (max_rss != NULL && (off & ((1 << 22) - 1)) < (int64_t)piece) {
            long r = rss_kib();
            if (r > *max_rss)
                *max_rss = r;
        }
    }
    free(buf);
    hex_sha(&st, sha);
    char future[BLOB_ID_LEN + 1];
    snprintf(future, sizeof(future), "%s", blob_writer_id(w));
    assert_int_equal(blob_commit(w, &got), BLOB_OK);
    assert_true(blob_id_valid(got.id));
    assert_string_equal(got.id, future); /* known before the commit */
    assert_int_equal(got.length, len);
    assert_string_equal(got.sha256, sha);
    return got;
}

/* Reads the whole file in pieces and checks it against seed and sha. */
static void check_file(enum blob_bucket b, const char *id, uint64_t seed, int64_t len,
                       const char *sha, long *max_rss)
{
    struct blob_reader *r = NULL;
    assert_int_equal(blobs_open_read(store, b, id, &r), BLOB_OK);
    assert_int_equal(blob_reader_meta(r)->length, len);
    assert_string_equal(blob_reader_meta(r)->sha256, sha);
    unsigned char *buf = malloc(PIECE), *want = malloc(PIECE);
    assert_non_null(buf);
    assert_non_null(want);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    int64_t off = 0;
    for (;;) {
        long n = blob_read(r, buf, PIECE);
        assert_true(n >= 0);
        if (n == 0)
            break;
        gen(seed, off, want, (size_t)n);
        if (memcmp(buf, want, (size_t)n) != 0)
            fail_msg("content differs in [%lld, %lld)", (long long)off, (long long)off + n);
        crypto_hash_sha256_update(&st, buf, (size_t)n);
        off += n;
        if (max_rss != NULL && (off & ((1 << 22) - 1)) < PIECE) {
            long rs = rss_kib();
            if (rs > *max_rss)
                *max_rss = rs;
        }
    }
    assert_int_equal(off, len);
    assert_int_equal(blob_read(r, buf, PIECE), 0);
    char got[65];
    hex_sha(&st, got);
    assert_string_equal(got, sha);
    blob_close(r);
    free(buf);
    free(want);
}

/* ---------- what a backend leaves on its storage ---------- */

static mongoc_client_t *test_client(void)
{
    mongoc_client_t *c = mongoc_client_new(th_need_env("VID2MP3_TEST_MONGODB_URI"));
    assert_non_null(c);
    return c;
}

static int64_t count_chunks(enum blob_bucket b, const char *id)
{
    mongoc_client_t *c = test_client();
    mongoc_collection_t *coll =
        mongoc_client_get_collection(c, b == BLOB_VIDEOS ? "videos" : "mp3s", "fs.chunks");
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, id);
    bson_t *filter = BCON_NEW("files_id", BCON_OID(&oid));
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &e);
    if (n < 0)
        fail_msg("count chunks: %s", e.message);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(c);
    return n;
}

static char found_name[64];
static int count_prefix_fn(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    if (flag == FTW_F && strncmp(path + ftw->base, found_name, BLOB_ID_LEN) == 0)
        return 1;
    return 0;
}

/* Files (fs) or chunks (gridfs) that still carry id. */
static int64_t leftovers(enum blob_bucket b, const char *id)
{
    if (is_gridfs())
        return count_chunks(b, id);
    snprintf(found_name, sizeof(found_name), "%s", id);
    return nftw(storedir, count_prefix_fn, 16, FTW_PHYS) == 1 ? 1 : 0;
}

static uint64_t marker_seed;
static int find_marker_fn(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag != FTW_F || st->st_size < 4096)
        return 0;
    char name[BLOB_ID_LEN + 1];
    snprintf(name, sizeof(name), "%s", path + ftw->base);
    if (!blob_id_valid(name))
        return 0;
    unsigned char got[4096], want[4096];
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    size_t n = fread(got, 1, sizeof(got), f);
    fclose(f);
    gen(marker_seed, 0, want, sizeof(want));
    if (n == sizeof(got) && memcmp(got, want, n) == 0) {
        snprintf(found_name, sizeof(found_name), "%s", name);
        return 1;
    }
    return 0;
}

/*
 * The id of an upload in progress (or left by a crash) whose content
 * starts with generated seed, found on the storage itself: the interface
 * does not say a writer's id before commit.
 */
static bool pending_id(enum blob_bucket b, uint64_t seed, char id[BLOB_ID_LEN + 1])
{
    marker_seed = seed;
    if (!is_gridfs()) {
        if (nftw(storedir, find_marker_fn, 16, FTW_PHYS) != 1)
            return false;
        memcpy(id, found_name, BLOB_ID_LEN);
        id[BLOB_ID_LEN] = '\0';
        return true;
    }
    /* first chunks of uploads started in the last hour */
    uint8_t raw[12] = {0};
    uint32_t t = (uint32_t)(time(NULL) - 3600);
    raw[0] = (uint8_t)(t >> 24), raw[1] = (uint8_t)(t >> 16), raw[2] = (uint8_t)(t >> 8),
    raw[3] = (uint8_t)t;
    bson_oid_t from;
    bson_oid_init_from_data(&from, raw);
    mongoc_client_t *c = test_client();
    mongoc_collection_t *coll =
        mongoc_client_get_collection(c, b == BLOB_VIDEOS ? "videos" : "mp3s", "fs.chunks");
    bson_t *filter = BCON_NEW("n", BCON_INT32(0), "files_id", "{", "$gte", BCON_OID(&from), "}");
    bson_t *opts = BCON_NEW("batchSize", BCON_INT32(4));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bool found = false;
    unsigned char *want = malloc(CH);
    assert_non_null(want);
    gen(seed, 0, want, CH);
    while (!found && mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        const uint8_t *data;
        uint32_t len;
        bson_subtype_t sub;
        if (!bson_iter_init_find(&it, doc, "data") || !BSON_ITER_HOLDS_BINARY(&it))
            continue;
        bson_iter_binary(&it, &sub, &len, &data);
        if (len != CH || memcmp(data, want, CH) != 0)
            continue;
        assert_true(bson_iter_init_find(&it, doc, "files_id"));
        bson_oid_to_string(bson_iter_oid(&it), id);
        found = true;
    }
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e))
        fail_msg("find chunks: %s", e.message);
    free(want);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(c);
    return found;
}

/* ---------- fixtures ---------- */

static int setup(void **state)
{
    (void)state;
    tmpdir = th_tmpdir();
    snprintf(storedir, sizeof(storedir), "%s/blobs", tmpdir);
    char id[BLOB_ID_LEN + 1];
    blob_id_new(id);
    snprintf(owner, sizeof(owner), "t-%s@example.com", id);
    char err[256] = "";
    store = open_backend(storedir, err, sizeof(err));
    if (store == NULL)
        fail_msg("cannot open %s backend: %s", backend, err);
    assert_string_equal(store->ops->name, backend);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    blobs_free(store);
    store = NULL;
    th_rmtree(tmpdir);
    free(tmpdir);
    return 0;
}

/* ---------- tests ---------- */

static void sizes_round_trip(void **state)
{
    (void)state;
    const int64_t sizes[] = {0, 1, CH - 1, CH, CH + 1, 3 * CH + 12345};
    /* pieces that straddle chunk boundaries, and whole chunks at once */
    const size_t pieces[] = {7777, PIECE, CH, 2 * CH + 3};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char sha[65];
        uint64_t seed = 100 + i;
        struct blob_meta m = put_file(BLOB_VIDEOS, seed, sizes[i], pieces[i % 4], sha, NULL);
        struct blob_meta st;
        assert_int_equal(blobs_stat(store, BLOB_VIDEOS, m.id, &st), BLOB_OK);
        assert_int_equal(st.length, sizes[i]);
        assert_string_equal(st.sha256, sha);
        check_file(BLOB_VIDEOS, m.id, seed, sizes[i], sha, NULL);
        assert_int_equal(blobs_remove(store, BLOB_VIDEOS, m.id), BLOB_OK);
        assert_int_equal(blobs_stat(store, BLOB_VIDEOS, m.id, &st), BLOB_ENOTFOUND);
        assert_int_equal(blobs_remove(store, BLOB_VIDEOS, m.id), BLOB_ENOTFOUND);
        assert_int_equal(leftovers(BLOB_VIDEOS, m.id), 0);
    }
}

static void large_file_streams_in_bounded_memory(void **state)
{
    (void)state;
    const int64_t len = 100LL * 1024 * 1024;
    char sha[65];
    long start = rss_kib(), peak_w = start, peak_r = start;
    struct blob_meta m = put_file(BLOB_MP3S, 7, len, PIECE, sha, &peak_w);
    check_file(BLOB_MP3S, m.id, 7, len, sha, &peak_r);
    print_message("rss: start %ld KiB, writing peak %ld KiB, reading peak %ld KiB\n", start, peak_w,
                  peak_r);
    /* sanitizers keep freed memory in quarantine, so only a plain build
     * measures what the streams hold */
    if (!SANITIZED) {
        assert_true(peak_w - start < 32 * 1024);
        assert_true(peak_r - start < 32 * 1024);
    }
    assert_int_equal(blobs_remove(store, BLOB_MP3S, m.id), BLOB_OK);
}

static void random_seeks_match_reference(void **state)
{
    (void)state;
    const int64_t len = 4 * CH + 1000;
    char sha[65];
    struct blob_meta m = put_file(BLOB_VIDEOS, 42, len, PIECE, sha, NULL);
    unsigned char *ref = malloc((size_t)len), *buf = malloc(2 * CH);
    assert_non_null(ref);
    assert_non_null(buf);
    gen(42, 0, ref, (size_t)len);
    struct blob_reader *r = NULL;
    assert_int_equal(blobs_open_read(store, BLOB_VIDEOS, m.id, &r), BLOB_OK);
    uint64_t rnd = 12345;
    int64_t pos = 0;
    for (int i = 0; i < 400; i++) {
        rnd = mix(rnd);
        /* targets at chunk boundaries, one off them, and anywhere */
        int64_t target;
        switch (rnd % 4) {
        case 0:
            target = (int64_t)((rnd >> 8) % 5) * CH;
            break;
        case 1:
            target = (int64_t)((rnd >> 8) % 5) * CH - 1;
            break;
        case 2:
            target = (int64_t)((rnd >> 8) % 5) * CH + 1;
            break;
        default:
            target = (int64_t)((rnd >> 8) % (uint64_t)(len + 1));
        }
        if (target < 0)
            target = 0;
        if (target > len)
            target = len;
        int64_t got;
        switch ((rnd >> 40) % 3) {
        case 0:
            got = blob_seek(r, target, SEEK_SET);
            break;
        case 1:
            got = blob_seek(r, target - pos, SEEK_CUR);
            break;
        default:
            got = blob_seek(r, target - len, SEEK_END);
        }
        assert_int_equal(got, target);
        size_t want = (size_t)((rnd >> 20) % (2 * CH));
        size_t done = 0;
        /* a short read is allowed; read until the amount or the end */
        while (done < want) {
            long n = blob_read(r, buf + done, want - done);
            assert_true(n >= 0);
            if (n == 0)
                break;
            done += (size_t)n;
        }
        size_t expect = (size_t)(len - target) < want ? (size_t)(len - target) : want;
        assert_int_equal(done, expect);
        if (memcmp(buf, ref + target, done) != 0)
            fail_msg("op %d: content differs after seek to %lld", i, (long long)target);
        pos = target + (int64_t)done;
        assert_int_equal(blob_seek(r, 0, SEEK_CUR), pos);
    }
    /* out of range and bad whence change nothing */
    assert_int_equal(blob_seek(r, 10, SEEK_SET), 10);
    assert_int_equal(blob_seek(r, len + 1, SEEK_SET), BLOB_EINVAL);
    assert_int_equal(blob_seek(r, -1, SEEK_SET), BLOB_EINVAL);
    assert_int_equal(blob_seek(r, -11, SEEK_CUR), BLOB_EINVAL);
    assert_int_equal(blob_seek(r, 1, SEEK_END), BLOB_EINVAL);
    assert_int_equal(blob_seek(r, -len - 1, SEEK_END), BLOB_EINVAL);
    assert_int_equal(blob_seek(r, 0, 12345), BLOB_EINVAL);
    assert_int_equal(blob_seek(r, 0, SEEK_CUR), 10);
    assert_int_equal(blob_seek(r, 0, SEEK_END), len);
    assert_int_equal(blob_read(r, buf, 10), 0);
    assert_int_equal(blob_seek(r, -len, SEEK_END), 0);
    assert_int_equal(blob_read(r, buf, 3), 3);
    assert_memory_equal(buf, ref, 3);
    blob_close(r);
    free(ref);
    free(buf);
    assert_int_equal(blobs_remove(store, BLOB_VIDEOS, m.id), BLOB_OK);
}

static void abort_leaves_no_trace(void **state)
{
    (void)state;
    struct blob_meta m = meta_for("aborted.mp4");
    struct blob_writer *w = NULL;
    unsigned char *buf = malloc(2 * CH + 5);
    assert_non_null(buf);
    gen(555, 0, buf, 2 * CH + 5);
    assert_int_equal(blobs_open_write(store, BLOB_VIDEOS, &m, &w), BLOB_OK);
    assert_int_equal(blob_write(w, buf, 2 * CH + 5), BLOB_OK);
    char id[BLOB_ID_LEN + 1];
    assert_true(pending_id(BLOB_VIDEOS, 555, id));
    assert_true(leftovers(BLOB_VIDEOS, id) > 0);
    /* not visible before commit */
    struct blob_meta st;
    struct blob_reader *r = NULL;
    assert_int_equal(blobs_stat(store, BLOB_VIDEOS, id, &st), BLOB_ENOTFOUND);
    assert_int_equal(blobs_open_read(store, BLOB_VIDEOS, id, &r), BLOB_ENOTFOUND);
    blob_abort(w);
    assert_int_equal(blobs_stat(store, BLOB_VIDEOS, id, &st), BLOB_ENOTFOUND);
    assert_int_equal(blobs_open_read(store, BLOB_VIDEOS, id, &r), BLOB_ENOTFOUND);
    assert_null(r);
    assert_int_equal(leftovers(BLOB_VIDEOS, id), 0);
    /* an abort with nothing written, too */
    assert_int_equal(blobs_open_write(store, BLOB_MP3S, &m, &w), BLOB_OK);
    blob_abort(w);
    blob_abort(NULL);
    free(buf);
}

struct upload_job {
    uint64_t seed;
    int64_t len;
    struct blob_meta m;
    char sha[65];
    int rc;
};

static void *upload_thread(void *arg)
{
    struct upload_job *j = arg;
    struct blob_meta m = meta_for("concurrent.bin");
    struct blob_writer *w = NULL;
    unsigned char buf[8192];
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    j->rc = blobs_open_write(store, j->seed % 2 ? BLOB_MP3S : BLOB_VIDEOS, &m, &w);
    for (int64_t off = 0; j->rc == BLOB_OK && off < j->len; off += (int64_t)sizeof(buf)) {
        size_t n = j->len - off < (int64_t)sizeof(buf) ? (size_t)(j->len - off) : sizeof(buf);
        gen(j->seed, off, buf, n);
        crypto_hash_sha256_update(&st, buf, n);
        j->rc = blob_write(w, buf, n);
    }
    hex_sha(&st, j->sha);
    if (j->rc == BLOB_OK)
        j->rc = blob_commit(w, &j->m);
    else
        blob_abort(w);
    return NULL;
}

static void concurrent_uploads(void **state)
{
    (void)state;
    enum { N = 8 };
    pthread_t t[N];
    struct upload_job jobs[N];
    for (int i = 0; i < N; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].seed = 1000 + (uint64_t)i;
        jobs[i].len = (int64_t)CH * (i % 3 + 1) + i * 1001;
        assert_int_equal(pthread_create(&t[i], NULL, upload_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].rc, BLOB_OK);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(jobs[i].m.id, jobs[k].m.id);
        enum blob_bucket b = jobs[i].seed % 2 ? BLOB_MP3S : BLOB_VIDEOS;
        check_file(b, jobs[i].m.id, jobs[i].seed, jobs[i].len, jobs[i].sha, NULL);
        assert_int_equal(blobs_remove(store, b, jobs[i].m.id), BLOB_OK);
    }
}

static void metadata_round_trip(void **state)
{
    (void)state;
    const char *name = "Été à Tōkyō — 東京の夏 🎵 (live).mp4";
    struct blob_meta m = meta_for(name), got, st;
    snprintf(m.content_type, sizeof(m.content_type), "video/quicktime");
    blob_id_new(m.job_id);
    struct blob_writer *w = NULL;
    assert_int_equal(blobs_open_write(store, BLOB_VIDEOS, &m, &w), BLOB_OK);
    assert_int_equal(blob_write(w, "hello", 5), BLOB_OK);
    assert_int_equal(blob_write(w, "", 0), BLOB_OK);
    assert_int_equal(blob_commit(w, &got), BLOB_OK);
    int64_t now = (int64_t)time(NULL) * 1000;
    assert_int_equal(blobs_stat(store, BLOB_VIDEOS, got.id, &st), BLOB_OK);
    const struct blob_meta *all[2] = {&got, &st};
    for (int i = 0; i < 2; i++) {
        assert_string_equal(all[i]->id, got.id);
        assert_string_equal(all[i]->owner, owner);
        assert_string_equal(all[i]->filename, name);
        assert_string_equal(all[i]->content_type, "video/quicktime");
        assert_string_equal(all[i]->job_id, m.job_id);
        assert_int_equal(all[i]->length, 5);
        assert_string_equal(all[i]->sha256,
                            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_true(all[i]->created_at > now - 60000 && all[i]->created_at < now + 60000);
    }
    assert_int_equal(st.created_at, got.created_at);
    char first[BLOB_ID_LEN + 1];
    memcpy(first, got.id, sizeof(first));
    struct blob_reader *r = NULL;
    assert_int_equal(blobs_open_read(store, BLOB_VIDEOS, got.id, &r), BLOB_OK);
    assert_memory_equal(blob_reader_meta(r), &st, sizeof(st));
    blob_close(r);
    blob_close(NULL);

    /* an empty job id and file name are allowed; the longest values fit */
    m = meta_for("");
    memset(m.filename, 'n', BLOB_NAME_MAX);
    m.filename[BLOB_NAME_MAX] = '\0';
    assert_int_equal(blobs_open_write(store, BLOB_MP3S, &m, &w), BLOB_OK);
    assert_int_equal(blob_commit(w, &got), BLOB_OK);
    assert_int_equal(blobs_stat(store, BLOB_MP3S, got.id, &st), BLOB_OK);
    assert_string_equal(st.filename, m.filename);
    assert_string_equal(st.job_id, "");
    assert_int_equal(st.length, 0);
    assert_int_equal(blobs_remove(store, BLOB_MP3S, got.id), BLOB_OK);
    assert_int_equal(blobs_remove(store, BLOB_VIDEOS, first), BLOB_OK);
}

static void bad_metadata_is_einval(void **state)
{
    (void)state;
    struct blob_writer *w = (struct blob_writer *)1;
    struct blob_meta m = meta_for("x.mp4");
    m.owner[0] = '\0';
    assert_int_equal(blobs_open_write(store, BLOB_VIDEOS, &m, &w), BLOB_EINVAL);
    assert_null(w);
    m = meta_for("x.mp4");
    snprintf(m.job_id, sizeof(m.job_id), "not-an-id");
    assert_int_equal(blobs_open_write(store, BLOB_VIDEOS, &m, &w), BLOB_EINVAL);
    m = meta_for("bad \xff\xfe utf-8.mp4");
    assert_int_equal(blobs_open_write(store, BLOB_VIDEOS, &m, &w), BLOB_EINVAL);
    m = meta_for("x.mp4");
    memset(m.filename, 'a', sizeof(m.filename)); /* not terminated */
    assert_int_equal(blobs_open_write(store, BLOB_VIDEOS, &m, &w), BLOB_EINVAL);
}

static void missing_and_malformed_ids(void **state)
{
    (void)state;
    char id[BLOB_ID_LEN + 1];
    blob_id_new(id);
    struct blob_meta st;
    struct blob_reader *r = (struct blob_reader *)1;
    assert_int_equal(blobs_stat(store, BLOB_VIDEOS, id, &st), BLOB_ENOTFOUND);
    assert_int_equal(blobs_open_read(store, BLOB_MP3S, id, &r), BLOB_ENOTFOUND);
    assert_null(r);
    assert_int_equal(blobs_remove(store, BLOB_VIDEOS, id), BLOB_ENOTFOUND);
    const char *bad[] = {"",
                         "xyz",
                         "0123456789abcdef0123456",
                         "0123456789abcdef012345678",
                         "0123456789ABCDEF01234567",
                         "0123456789abcdef0123456g",
                         "../../../../etc/passwd000",
                         "0123456789abcdef/1234567"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(blob_id_valid(bad[i]));
        assert_int_equal(blobs_stat(store, BLOB_VIDEOS, bad[i], &st), BLOB_EINVAL);
        assert_int_equal(blobs_open_read(store, BLOB_VIDEOS, bad[i], &r), BLOB_EINVAL);
        assert_int_equal(blobs_remove(store, BLOB_MP3S, bad[i]), BLOB_EINVAL);
    }
    assert_false(blob_id_valid(NULL));
    assert_true(blob_id_valid(id));
    assert_string_equal(blobs_strerror(BLOB_ENOTFOUND), "no such file");
}

static void bucket_isolation(void **state)
{
    (void)state;
    char sha[65];
    struct blob_meta m = put_file(BLOB_VIDEOS, 77, 1000, PIECE, sha, NULL), st;
    struct blob_reader *r = NULL;
    assert_int_equal(blobs_stat(store, BLOB_MP3S, m.id, &st), BLOB_ENOTFOUND);
    assert_int_equal(blobs_open_read(store, BLOB_MP3S, m.id, &r), BLOB_ENOTFOUND);
    assert_int_equal(blobs_remove(store, BLOB_MP3S, m.id), BLOB_ENOTFOUND);
    check_file(BLOB_VIDEOS, m.id, 77, 1000, sha, NULL);
    assert_int_equal(blobs_remove(store, BLOB_VIDEOS, m.id), BLOB_OK);
}

/* What the crashed child does: start an upload of seed and exit without
 * commit, abort or any clean-up, as kill -9 would leave it. */
static int crash_child(const char *dir, const char *seed_text)
{
    char err[256];
    struct blobs *s = open_backend(dir, err, sizeof(err));
    if (s == NULL)
        return 3;
    struct blob_meta m = meta_for("crashed.mp4");
    struct blob_writer *w = NULL;
    if (blobs_open_write(s, BLOB_VIDEOS, &m, &w) != BLOB_OK)
        return 4;
    uint64_t seed = strtoull(seed_text, NULL, 10);
    unsigned char *buf = malloc(2 * CH + 100);
    if (buf == NULL)
        return 5;
    gen(seed, 0, buf, 2 * CH + 100);
    if (blob_write(w, buf, 2 * CH + 100) != BLOB_OK)
        return 6;
    _exit(0);
}

static void gc_removes_crash_leftovers_only(void **state)
{
    (void)state;
    char sha[65];
    struct blob_meta kept = put_file(BLOB_VIDEOS, 9, CH + 10, PIECE, sha, NULL);
    char seed_text[32];
    snprintf(seed_text, sizeof(seed_text), "%llu", (unsigned long long)(now_s() * 1000));
    uint64_t seed = strtoull(seed_text, NULL, 10);
    setenv("VID2MP3_TEST_OWNER", owner, 1);
    char *argv[] = {(char *)self_exe, "crash-child", (char *)backend, storedir, seed_text, NULL};
    assert_int_equal(th_run(argv, NULL, NULL, NULL), 0);
    char id[BLOB_ID_LEN + 1];
    assert_true(pending_id(BLOB_VIDEOS, seed, id));
    assert_true(leftovers(BLOB_VIDEOS, id) > 0);
    struct blob_meta st;
    assert_int_equal(blobs_stat(store, BLOB_VIDEOS, id, &st), BLOB_ENOTFOUND);

    /* too young for an hour's threshold: it could be an upload in progress */
    struct blobs_gc_stats gs = {0};
    assert_int_equal(blobs_gc(store, 3600, &gs), BLOB_OK);
    assert_true(leftovers(BLOB_VIDEOS, id) > 0);

    assert_int_equal(blobs_gc(store, 0, &gs), BLOB_OK);
    assert_true(gs.files_removed + gs.chunks_removed > 0);
    assert_int_equal(leftovers(BLOB_VIDEOS, id), 0);
    check_file(BLOB_VIDEOS, kept.id, 9, CH + 10, sha, NULL);

    if (!is_gridfs()) {
        /* content renamed into place by a commit that died before its
         * sidecar: invisible, and gc's */
        char side[1024], sha2[65];
        struct blob_meta half = put_file(BLOB_MP3S, 10, 100, PIECE, sha2, NULL);
        snprintf(side, sizeof(side), "%s/mp3s/%.2s/%.24s.json", storedir, half.id + BLOB_ID_LEN - 2,
                 half.id);
        assert_int_equal(unlink(side), 0);
        assert_int_equal(blobs_stat(store, BLOB_MP3S, half.id, &st), BLOB_ENOTFOUND);
        assert_int_equal(leftovers(BLOB_MP3S, half.id), 1);
        assert_int_equal(blobs_gc(store, 0, &gs), BLOB_OK);
        assert_int_equal(gs.files_removed, 1);
        assert_int_equal(leftovers(BLOB_MP3S, half.id), 0);
    }
    assert_int_equal(blobs_gc(store, 0, &gs), BLOB_OK);
    check_file(BLOB_VIDEOS, kept.id, 9, CH + 10, sha, NULL);
    assert_int_equal(blobs_remove(store, BLOB_VIDEOS, kept.id), BLOB_OK);
}

/* An upload that a sweep took for abandoned (gc with threshold 0 while it
 * was still writing) must fail at commit, never become a broken file. */
static void gc_during_upload_never_commits_a_broken_file(void **state)
{
    (void)state;
    struct blob_meta m = meta_for("in-progress.mp4");
    struct blob_writer *w = NULL;
    assert_int_equal(blobs_open_write(store, BLOB_VIDEOS, &m, &w), BLOB_OK);
    unsigned char *buf = malloc(2 * CH + 10);
    assert_non_null(buf);
    gen(99, 0, buf, 2 * CH + 10);
    assert_int_equal(blob_write(w, buf, 2 * CH), BLOB_OK);
    struct blobs_gc_stats st = {0};
    assert_int_equal(blobs_gc(store, 3600, &st), BLOB_OK); /* a live upload is young */
    assert_int_equal(st.files_removed, 0);
    assert_int_equal(blobs_gc(store, 0, &st), BLOB_OK); /* forced: everything is old */
    int rc = blob_write(w, buf + 2 * CH, 10);
    struct blob_meta got;
    memset(&got, 0, sizeof(got));
    if (rc == BLOB_OK) {
        rc = blob_commit(w, &got);
        if (rc == BLOB_OK) {
            /* the backend kept what it had written: then it must be whole */
            char sha[65];
            crypto_hash_sha256_state h;
            crypto_hash_sha256_init(&h);
            crypto_hash_sha256_update(&h, buf, 2 * CH + 10);
            hex_sha(&h, sha);
            check_file(BLOB_VIDEOS, got.id, 99, 2 * CH + 10, sha, NULL);
        } else {
            assert_int_equal(rc, BLOB_EIO); /* refused, and nothing was published */
        }
    } else {
        blob_abort(w);
    }
    free(buf);
}

/* Many readers open at once (more than a connection pool holds) do not
 * block the store for anyone else. */
static void many_open_readers_do_not_block_the_store(void **state)
{
    (void)state;
    enum { READERS = 150 };
    char sha[65];
    struct blob_meta f = put_file(BLOB_MP3S, 7, 3 * CH + 5, PIECE, sha, NULL);
    struct blob_reader *r[READERS];
    unsigned char byte;
    for (int i = 0; i < READERS; i++) {
        assert_int_equal(blobs_open_read(store, BLOB_MP3S, f.id, &r[i]), BLOB_OK);
        assert_int_equal(blob_seek(r[i], (int64_t)(i % 4) * CH, SEEK_SET), (int64_t)(i % 4) * CH);
        assert_int_equal(blob_read(r[i], &byte, 1), 1);
    }
    struct blob_meta st;
    assert_int_equal(blobs_stat(store, BLOB_MP3S, f.id, &st), BLOB_OK);
    assert_int_equal(blobs_ping(store), BLOB_OK);
    put_file(BLOB_VIDEOS, 8, 10, 10, sha, NULL);
    for (int i = 0; i < READERS; i++)
        blob_close(r[i]);
}

static void dead_backend_is_unavailable(void **state)
{
    (void)state;
    struct blobs *dead = NULL;
    char err[256] = "";
    if (is_gridfs()) {
        char uri[64];
        snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d", th_free_port());
        dead = blobs_gridfs_new(uri, err, sizeof(err)); /* down is not an error here */
    } else {
        char dir[700];
        snprintf(dir, sizeof(dir), "%s/dead", tmpdir);
        dead = blobs_fs_new(dir, err, sizeof(err));
        th_rmtree(dir);
    }
    if (dead == NULL)
        fail_msg("cannot open: %s", err);
    double t0 = now_s();
    assert_int_equal(blobs_ping(dead), BLOB_EUNAVAIL);
    if (is_gridfs()) {
        char id[BLOB_ID_LEN + 1];
        blob_id_new(id);
        struct blob_meta m = meta_for("x.mp4"), st;
        struct blob_writer *w = NULL;
        struct blob_reader *r = NULL;
        struct blobs_gc_stats gs;
        assert_int_equal(blobs_open_write(dead, BLOB_VIDEOS, &m, &w), BLOB_EUNAVAIL);
        assert_int_equal(blobs_stat(dead, BLOB_VIDEOS, id, &st), BLOB_EUNAVAIL);
        assert_int_equal(blobs_open_read(dead, BLOB_VIDEOS, id, &r), BLOB_EUNAVAIL);
        assert_int_equal(blobs_remove(dead, BLOB_VIDEOS, id), BLOB_EUNAVAIL);
        assert_int_equal(blobs_gc(dead, 0, &gs), BLOB_EUNAVAIL);
    }
    double took = now_s() - t0;
    print_message("dead backend: answered in %.1f s\n", took);
    assert_true(took < 30.0); /* six calls, each bounded by the 3 s selection timeout */
    blobs_free(dead);
    assert_int_equal(blobs_ping(store), BLOB_OK);
}

/* GridFS only: our layout is the spec's, and a file written by another
 * driver (libmongoc's own GridFS, with another chunk size) reads back. */
static void gridfs_interoperates(void **state)
{
    (void)state;
    char sha[65];
    struct blob_meta m = put_file(BLOB_MP3S, 31, 2 * CH + 7, PIECE, sha, NULL);
    mongoc_client_t *c = test_client();
    mongoc_database_t *db = mongoc_client_get_database(c, "mp3s");
    mongoc_collection_t *files = mongoc_database_get_collection(db, "fs.files");
    bson_oid_t oid;
    bson_oid_init_from_string(&oid, m.id);
    bson_t *filter = BCON_NEW("_id", BCON_OID(&oid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(files, filter, NULL, NULL);
    const bson_t *doc;
    assert_true(mongoc_cursor_next(cur, &doc));
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, doc, "length") && BSON_ITER_HOLDS_INT64(&it));
    assert_int_equal(bson_iter_int64(&it), 2 * CH + 7);
    assert_true(bson_iter_init_find(&it, doc, "chunkSize") && BSON_ITER_HOLDS_INT32(&it));
    assert_int_equal(bson_iter_int32(&it), 261120);
    assert_true(bson_iter_init_find(&it, doc, "uploadDate") && BSON_ITER_HOLDS_DATE_TIME(&it));
    assert_true(bson_iter_init_find(&it, doc, "filename") && BSON_ITER_HOLDS_UTF8(&it));
    bson_iter_t sub;
    assert_true(bson_iter_init(&it, doc) &&
                bson_iter_find_descendant(&it, "metadata.sha256", &sub));
    assert_string_equal(bson_iter_utf8(&sub, NULL), sha);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    assert_int_equal(count_chunks(BLOB_MP3S, m.id), 3);

    /* read ours with libmongoc's GridFS */
    bson_error_t e;
    mongoc_gridfs_bucket_t *gb = mongoc_gridfs_bucket_new(db, NULL, NULL, &e);
    assert_non_null(gb);
    bson_value_t idv = {.value_type = BSON_TYPE_OID};
    bson_oid_copy(&oid, &idv.value.v_oid);
    mongoc_stream_t *in = mongoc_gridfs_bucket_open_download_stream(gb, &idv, &e);
    assert_non_null(in);
    unsigned char *buf = malloc(3 * CH), *want = malloc(3 * CH);
    assert_non_null(buf);
    assert_non_null(want);
    size_t got = 0;
    ssize_t n;
    while ((n = mongoc_stream_read(in, buf + got, 3 * CH - got, 1, 0)) > 0)
        got += (size_t)n;
    mongoc_stream_destroy(in);
    assert_int_equal(got, 2 * CH + 7);
    gen(31, 0, want, got);
    assert_memory_equal(buf, want, got);

    /* write with libmongoc's GridFS at a chunk size of 1000, read with ours */
    bson_t *opts = BCON_NEW("chunkSizeBytes", BCON_INT32(1000));
    bson_value_t theirs;
    mongoc_stream_t *out =
        mongoc_gridfs_bucket_open_upload_stream(gb, "theirs.bin", opts, &theirs, &e);
    assert_non_null(out);
    gen(32, 0, want, 5555);
    assert_int_equal(mongoc_stream_write(out, want, 5555, 0), 5555);
    assert_int_equal(mongoc_stream_close(out), 0);
    mongoc_stream_destroy(out);
    char tid[BLOB_ID_LEN + 1];
    bson_oid_to_string(&theirs.value.v_oid, tid);
    struct blob_reader *r = NULL;
    assert_int_equal(blobs_open_read(store, BLOB_MP3S, tid, &r), BLOB_OK);
    assert_int_equal(blob_reader_meta(r)->length, 5555);
    assert_int_equal(blob_seek(r, 2999, SEEK_SET), 2999);
    long k = blob_read(r, buf, 3 * CH);
    assert_int_equal(k, 5555 - 2999);
    assert_memory_equal(buf, want + 2999, (size_t)k);
    blob_close(r);
    assert_int_equal(blobs_remove(store, BLOB_MP3S, tid), BLOB_OK);
    assert_int_equal(count_chunks(BLOB_MP3S, tid), 0);

    /* a damaged file (a chunk gone) is BLOB_EIO, not a crash */
    mongoc_collection_t *chunks = mongoc_database_get_collection(db, "fs.chunks");
    bson_t *del = BCON_NEW("files_id", BCON_OID(&oid), "n", BCON_INT32(1));
    assert_true(mongoc_collection_delete_one(chunks, del, NULL, NULL, &e));
    assert_int_equal(blobs_open_read(store, BLOB_MP3S, m.id, &r), BLOB_OK);
    assert_int_equal(blob_seek(r, CH + 5, SEEK_SET), CH + 5);
    assert_int_equal(blob_read(r, buf, 10), BLOB_EIO);
    assert_int_equal(blob_seek(r, 0, SEEK_SET), 0);
    assert_int_equal(blob_read(r, buf, 2 * CH), CH); /* up to the hole */
    assert_int_equal(blob_read(r, buf, 10), BLOB_EIO);
    blob_close(r);
    /* and so is a short one */
    bson_t *sel = BCON_NEW("files_id", BCON_OID(&oid), "n", BCON_INT32(0));
    bson_t *upd = BCON_NEW("$set", "{", "data", BCON_BIN(BSON_SUBTYPE_BINARY, want, 10), "}");
    assert_true(mongoc_collection_update_one(chunks, sel, upd, NULL, NULL, &e));
    assert_int_equal(blobs_open_read(store, BLOB_MP3S, m.id, &r), BLOB_OK);
    assert_int_equal(blob_read(r, buf, 10), BLOB_EIO);
    blob_close(r);
    bson_destroy(sel);
    bson_destroy(upd);
    assert_int_equal(blobs_remove(store, BLOB_MP3S, m.id), BLOB_OK);
    assert_int_equal(count_chunks(BLOB_MP3S, m.id), 0);

    /* the spec's indexes exist */
    cur = mongoc_collection_find_indexes_with_opts(chunks, NULL);
    bool unique = false;
    while (mongoc_cursor_next(cur, &doc))
        if (bson_iter_init_find(&it, doc, "name") &&
            strcmp(bson_iter_utf8(&it, NULL), "files_id_1_n_1") == 0)
            unique = bson_iter_init_find(&it, doc, "unique") && bson_iter_as_bool(&it);
    assert_true(unique);
    mongoc_cursor_destroy(cur);

    bson_destroy(del);
    bson_destroy(opts);
    bson_value_destroy(&theirs);
    free(buf);
    free(want);
    mongoc_gridfs_bucket_destroy(gb);
    mongoc_collection_destroy(chunks);
    mongoc_collection_destroy(files);
    mongoc_database_destroy(db);
    mongoc_client_destroy(c);
}

int main(int argc, char **argv)
{
    self_exe = argv[0];
    if (argc == 5 && strcmp(argv[1], "crash-child") == 0) {
        backend = argv[2];
        const char *o = getenv("VID2MP3_TEST_OWNER");
        snprintf(owner, sizeof(owner), "%s", o != NULL ? o : "crash@example.com");
        return crash_child(argv[3], argv[4]);
    }
    if (argc != 2 || (strcmp(argv[1], "fs") != 0 && strcmp(argv[1], "gridfs") != 0)) {
        fprintf(stderr, "usage: %s fs|gridfs\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    if (sodium_init() < 0)
        return 1;
    mongoc_init(); /* for the test's own clients */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sizes_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(metadata_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_metadata_is_einval, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_and_malformed_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(bucket_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(random_seeks_match_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_leaves_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_uploads, setup, teardown),
        cmocka_unit_test_setup_teardown(gc_removes_crash_leftovers_only, setup, teardown),
        cmocka_unit_test_setup_teardown(gc_during_upload_never_commits_a_broken_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(many_open_readers_do_not_block_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_backend_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(large_file_streams_in_bounded_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(gridfs_interoperates, setup, teardown),
    };
    size_t n = sizeof(tests) / sizeof(tests[0]);
    if (!is_gridfs())
        n--; /* the last one is GridFS's own */
    int rc = _cmocka_run_group_tests(backend, tests, n, NULL, NULL);
    mongoc_cleanup();
    return rc;
}
