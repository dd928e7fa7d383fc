/* Unit tests: converter/mp3splice. The frames are made here from the layer
 * III layout (ISO 11172-3, ISO 13818-3) with a parser and a reference
 * splicer of the test's own, so the checks share no code with the module;
 * the last tests splice real frames from libavcodec's libmp3lame. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>

#include "converter/mp3splice.h"

#define MAX_PUSH 256
/* A segment's payload stream: at most MAX_PUSH frames. */
#define SEG_MAX (MAX_PUSH * MP3_FRAME_MAX)
/* The longest main data: a 1405-byte MPEG-1 payload plus a 511-byte reservoir. */
#define DATA_MAX 2048

/* ---- the layer III layout --------------------------------------------- */

static const int kbps_tab[2][15] = {
    {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320},
    {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
};

/* version: 1, 2 or 25 as in struct mp3_header. */
static int rate_of(int version, int rate_index)
{
    static const int base[3] = {44100, 48000, 32000};
    return base[rate_index] / (version == 1 ? 1 : version == 2 ? 2 : 4);
}

static int size_of(int version, int bitrate_index, int rate_index, int padding)
{
    int kbps = kbps_tab[version != 1][bitrate_index];
    return (version == 1 ? 144000 : 72000) * kbps / rate_of(version, rate_index) + padding;
}

static int side_of(int version, int channels)
{
    if (version == 1)
        return channels == 1 ? 17 : 32;
    return channels == 1 ? 9 : 17;
}

static int mdb_max(int version)
{
    return version == 1 ? 511 : 255;
}

static int mdb_bits(int version)
{
    return version == 1 ? 9 : 8;
}

/* Granules times channels: the side info's part2_3_length fields. */
static int nblocks(int version, int channels)
{
    return (version == 1 ? 2 : 1) * channels;
}

/* The bit offset of block k (granule-major) in the side info. */
static int block_pos(int version, int channels, int k)
{
    if (version == 1)
        return 9 + (channels == 1 ? 5 : 3) + 4 * channels + 59 * k;
    return 8 + (channels == 1 ? 1 : 2) + 63 * k;
}

static void put_bits(uint8_t *p, int pos, int n, unsigned v)
{
    for (int i = 0; i < n; i++) {
        int at = pos + i;
        uint8_t mask = (uint8_t)(0x80u >> (at % 8));
        if ((v >> (n - 1 - i)) & 1u)
            p[at / 8] |= mask;
        else
            p[at / 8] &= (uint8_t)~mask;
    }
}

static unsigned get_bits(const uint8_t *p, int pos, int n)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        int at = pos + i;
        v = (v << 1) | ((p[at / 8] >> (7 - at % 8)) & 1u);
    }
    return v;
}

/* A frame as the test's own parser sees it. */
struct rframe {
    int version, bi, ri, channels, pad, crc;
    int size, side, hs, cap; /* whole frame, side info, header + CRC + side, payload */
    int mdb, len;            /* main_data_begin, main data bytes */
};

/* Parses the frame at f; the side info fields only when avail holds them
 * (else mdb and len are 0). false when it is no layer III header. */
static bool rparse(const uint8_t *f, size_t avail, struct rframe *r)
{
    memset(r, 0, sizeof *r);
    if (avail < 4 || f[0] != 0xff || (f[1] & 0xe0) != 0xe0)
        return false;
    int vbits = (f[1] >> 3) & 3, layer = (f[1] >> 1) & 3;
    if (vbits == 1 || layer != 1)
        return false;
    r->version = vbits == 3 ? 1 : vbits == 2 ? 2 : 25;
    r->crc = !(f[1] & 1);
    r->bi = f[2] >> 4;
    r->ri = (f[2] >> 2) & 3;
    r->pad = (f[2] >> 1) & 1;
    if (r->bi == 0 || r->bi == 15 || r->ri == 3)
        return false;
    r->channels = (f[3] >> 6) == 3 ? 1 : 2;
    r->size = size_of(r->version, r->bi, r->ri, r->pad);
    r->side = side_of(r->version, r->channels);
    r->hs = 4 + 2 * r->crc + r->side;
    r->cap = r->size - r->hs;
    if (avail >= (size_t)r->hs) {
        const uint8_t *si = f + 4 + 2 * r->crc;
        int bits = 0;
        r->mdb = (int)get_bits(si, 0, mdb_bits(r->version));
        for (int k = 0; k < nblocks(r->version, r->channels); k++)
            bits += (int)get_bits(si, block_pos(r->version, r->channels, k), 12);
        r->len = (bits + 7) / 8;
    }
    return true;
}

static uint32_t rnd(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* What a stream's frames share. */
struct fmt {
    int version, ri, channels;
};

/* Writes the header and side info of a frame (main_data_begin mdb, len
 * bytes of main data) at f and zeroes its payload; returns its size. The
 * fields the splicer must carry over unchanged (private bits, mode
 * extension, scfsi, the rest of each granule's side info) are random. */
static int make_frame(uint8_t *f, const struct fmt *fm, int bi, int pad, int mdb, int len,
                      uint32_t *rng)
{
    int size = size_of(fm->version, bi, fm->ri, pad);
    int side = side_of(fm->version, fm->channels);
    int nb = nblocks(fm->version, fm->channels);
    int vbits = fm->version == 1 ? 3 : fm->version == 2 ? 2 : 0;
    int bits = len > 0 ? len * 8 - (int)(rnd(rng) % 8) : 0;

    assert_in_range(mdb, 0, mdb_max(fm->version));
    assert_true(bits <= nb * 4095);
    memset(f, 0, (size_t)size);
    f[0] = 0xff;
    f[1] = (uint8_t)(0xe0 | vbits << 3 | 1 << 1 | 1);
    f[2] = (uint8_t)(bi << 4 | fm->ri << 2 | pad << 1 | (rnd(rng) & 1));
    if (fm->channels == 1)
        f[3] = 0xc4;
    else
        f[3] = (uint8_t)(0x44 | (rnd(rng) & 3) << 4);
    for (int i = 0; i < side; i++)
        f[4 + i] = (uint8_t)rnd(rng);
    put_bits(f + 4, 0, mdb_bits(fm->version), (unsigned)mdb);
    for (int k = 0; k < nb; k++) {
        int part = bits / nb + (k == 0 ? bits % nb : 0);
        put_bits(f + 4, block_pos(fm->version, fm->channels, k), 12, (unsigned)part);
    }
    return size;
}

/* ---- streams to push ---------------------------------------------------- */

struct push {
    uint8_t frame[MP3_FRAME_MAX];
    int len;
    bool keep;
    bool begin; /* mp3splice_begin_segment before this push */
    uint8_t data[DATA_MAX];
    int dlen; /* its main data as its encoder laid it out */
};

struct plan {
    struct push *p;
    int n;
};

static void plan_init(struct plan *pl)
{
    pl->p = calloc(MAX_PUSH, sizeof *pl->p);
    assert_non_null(pl->p);
    pl->n = 0;
}

static void plan_cleanup(struct plan *pl)
{
    free(pl->p);
    pl->p = NULL;
}

static struct push *plan_add(struct plan *pl)
{
    assert_true(pl->n < MAX_PUSH);
    struct push *u = &pl->p[pl->n++];
    memset(u, 0, sizeof *u);
    return u;
}

/* Extracts every frame's main data from the plan's segments as a decoder
 * would; verify: compare with what the builder recorded, else record it. */
static void plan_extract(struct plan *pl, bool verify)
{
    uint8_t *seg = calloc(SEG_MAX, 1);
    int pos = 0;
    assert_non_null(seg);
    for (int i = 0; i < pl->n; i++) {
        struct push *u = &pl->p[i];
        struct rframe f;
        if (u->begin || i == 0)
            pos = 0;
        assert_true(rparse(u->frame, (size_t)u->len, &f));
        assert_int_equal(f.size, u->len);
        assert_true(f.mdb <= pos);
        assert_true(f.len <= f.mdb + f.cap);
        memcpy(seg + pos, u->frame + f.hs, (size_t)f.cap);
        if (verify) {
            assert_int_equal(f.len, u->dlen);
            assert_memory_equal(seg + pos - f.mdb, u->data, (size_t)f.len);
        } else {
            u->dlen = f.len;
            memcpy(u->data, seg + pos - f.mdb, (size_t)f.len);
        }
        pos += f.cap;
    }
    free(seg);
}

/* A model encoder: lays each frame's main data into its segment's payload
 * stream as a layer III encoder does, after the previous frame's. */
struct enc {
    struct plan *pl;
    struct fmt fm;
    uint32_t rng;
    int first;    /* the segment's first push */
    uint8_t *pay; /* the segment's payload stream */
    int pos, end; /* next payload byte; end of the last frame's data */
    int mdb_seen; /* frames with main_data_begin > 0 */
};

static void enc_begin(struct enc *e, struct plan *pl, const struct fmt *fm, uint32_t seed)
{
    memset(e, 0, sizeof *e);
    e->pl = pl;
    e->fm = *fm;
    e->rng = seed | 1;
    e->first = pl->n;
    e->pay = calloc(SEG_MAX, 1);
    assert_non_null(e->pay);
}

static int enc_cap(const struct enc *e, int bi, int pad)
{
    return size_of(e->fm.version, bi, e->fm.ri, pad) - 4 - side_of(e->fm.version, e->fm.channels);
}

/* Where the next frame's data starts when it follows the last as closely
 * as main_data_begin allows. */
static int enc_start(const struct enc *e)
{
    int start = e->pos - mdb_max(e->fm.version);
    return start > e->end ? start : e->end;
}

/* The most main data the next frame can have. */
static int enc_room(const struct enc *e, int bi, int pad)
{
    int room = e->pos + enc_cap(e, bi, pad) - enc_start(e);
    int most = nblocks(e->fm.version, e->fm.channels) * 4095 / 8;
    return room < most ? room : most;
}

/* Adds a frame whose len bytes of data (random, never zero) start mdb
 * bytes before its payload. */
static struct push *enc_frame_at(struct enc *e, int bi, int pad, int mdb, int len, bool keep)
{
    struct push *u = plan_add(e->pl);
    int start = e->pos - mdb;
    int cap = enc_cap(e, bi, pad);

    assert_true(start >= e->end);
    assert_true(start + len <= e->pos + cap);
    assert_true(len <= DATA_MAX);
    u->len = make_frame(u->frame, &e->fm, bi, pad, mdb, len, &e->rng);
    u->keep = keep;
    u->begin = e->pl->n - 1 == e->first;
    u->dlen = len;
    for (int i = 0; i < len; i++)
        u->data[i] = (uint8_t)(1 + rnd(&e->rng) % 255);
    memcpy(e->pay + start, u->data, (size_t)len);
    e->pos += cap;
    e->end = start + len;
    e->mdb_seen += mdb > 0;
    return u;
}

/* Adds a frame whose data starts gap bytes after where it could (but not
 * after its own payload's start). */
static struct push *enc_frame(struct enc *e, int bi, int pad, int gap, int len, bool keep)
{
    int start = enc_start(e) + gap;
    if (start > e->pos)
        start = e->pos;
    return enc_frame_at(e, bi, pad, e->pos - start, len, keep);
}

/* Copies the payload stream into the segment's frames. */
static void enc_end(struct enc *e)
{
    int pos = 0;
    for (int i = e->first; i < e->pl->n; i++) {
        struct push *u = &e->pl->p[i];
        int hs = 4 + side_of(e->fm.version, e->fm.channels);
        memcpy(u->frame + hs, e->pay + pos, (size_t)(u->len - hs));
        pos += u->len - hs;
    }
    free(e->pay);
    e->pay = NULL;
}

/* A bitrate index for a random frame: often the top one, where only an
 * earlier frame can grow, or one whose payload is just under what
 * main_data_begin reaches at 48 and 24 kHz, which leaves the frame before
 * it pending. */
static int random_index(uint32_t *rng)
{
    switch (rnd(rng) % 6) {
    case 0:
    case 1:
        return 14;
    case 2:
        return 9 + (int)(rnd(rng) % 3);
    default:
        return 1 + (int)(rnd(rng) % 14);
    }
}

/* A segment of npre pre-roll, nkeep kept and npost post-roll frames at
 * random bitrates (one for all when !vbr), lengths and gaps. edges: the
 * pre-roll's data are short, so that the first kept frame's can start far
 * back, and the first and last kept frames' data fill their room: the
 * joins then have the most to make up. */
static void random_segment(struct plan *pl, const struct fmt *fm, uint32_t *rng, int npre,
                           int nkeep, int npost, bool vbr, bool edges)
{
    struct enc e;
    int bi0 = random_index(rng);
    enc_begin(&e, pl, fm, rnd(rng));
    for (int i = 0; i < npre + nkeep + npost; i++) {
        int bi = vbr ? random_index(rng) : bi0;
        int pad = (int)(rnd(rng) % 2);
        int room = enc_room(&e, bi, pad);
        int len, gap = 0;
        int pick = (int)(rnd(rng) % 5);
        if (edges && i < npre)
            pick = 1;
        else if (edges && (i == npre || i == npre + nkeep - 1))
            pick = 0;
        switch (pick) {
        case 0:
            len = room;
            break;
        case 1:
            len = (int)(rnd(rng) % 8);
            break;
        case 2:
            len = room - (int)(rnd(rng) % (room / 4 + 1));
            break;
        default:
            len = (int)(rnd(rng) % (room + 1));
            if (rnd(rng) % 4 == 0)
                gap = (int)(rnd(rng) % (room - len + 1));
            break;
        }
        if (len > room)
            len = room;
        if (len < 0)
            len = 0;
        enc_frame(&e, bi, pad, gap, len, i >= npre && i < npre + nkeep);
    }
    enc_end(&e);
}

/* ---- running the splicer and the reference ------------------------------ */

struct result {
    uint8_t *out; /* the popped frames, back to back */
    size_t len, alloc;
    int nout;
    int err, err_at; /* the first failed push */
    long raised, slid;
    int before_finish; /* frames popped before mp3splice_finish */
    int max_held;      /* most kept frames pushed and not popped */
    /* After push i: the splicer's frames out so far (popping after every
     * push), or the reference's frames that have become ready. */
    int out_after[MAX_PUSH];
    /* The reference's: the push each frame out comes from, in order. */
    int from[MAX_PUSH];
    /* The reference's raise steps, of frames older than the previous one,
     * and raises refused for a later frame's main_data_begin. */
    long raise_steps, steps_older, refused_mdb;
};

static struct result *result_new(void)
{
    struct result *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->err_at = -1;
    return r;
}

static void result_free(struct result *r)
{
    if (r != NULL)
        free(r->out);
    free(r);
}

static void result_append(struct result *r, const uint8_t *p, size_t n)
{
    if (r->len + n > r->alloc) {
        size_t want = r->alloc ? r->alloc * 2 : 65536;
        while (want < r->len + n)
            want *= 2;
        r->out = realloc(r->out, want);
        assert_non_null(r->out);
        r->alloc = want;
    }
    memcpy(r->out + r->len, p, n);
    r->len += n;
}

static void drain(struct mp3splice *s, struct result *r)
{
    const uint8_t *f;
    size_t len;
    while (mp3splice_pop(s, &f, &len)) {
        assert_non_null(f);
        assert_in_range(len, 4, MP3_FRAME_MAX);
        result_append(r, f, len);
        r->nout++;
    }
}

/* Pushes the plan, popping after every push (eager) or only after finish;
 * stops at the first error. */
static struct result *run(const struct plan *pl, bool eager)
{
    struct result *r = result_new();
    struct mp3splice *s = mp3splice_new();
    int kept = 0;

    assert_non_null(s);
    assert_int_equal(mp3splice_raised(s), 0);
    for (int i = 0; i < pl->n; i++) {
        const struct push *u = &pl->p[i];
        if (u->begin)
            mp3splice_begin_segment(s);
        int rc = mp3splice_push(s, u->frame, (size_t)u->len, u->keep);
        if (rc != 0) {
            r->err = rc;
            r->err_at = i;
            break;
        }
        kept += u->keep;
        if (eager)
            drain(s, r);
        r->out_after[i] = r->nout;
        if (kept - r->nout > r->max_held)
            r->max_held = kept - r->nout;
    }
    r->before_finish = r->nout;
    mp3splice_finish(s);
    drain(s, r);
    r->raised = mp3splice_raised(s);
    r->slid = mp3splice_slid(s);
    mp3splice_free(s);
    return r;
}

struct rkept {
    uint8_t head[4 + 32];
    int from; /* the push it comes from */
    int hs, version, ri;
    int bi, pad, cap, mdb, len; /* mdb: its encoder's */
    int p, s;                   /* output payload position of the frame and of its data */
    bool raised;
    uint8_t data[DATA_MAX];
};

/* The output so far: the kept frames k[0..nk) and where the payload and
 * the last frame's data end. The frames before k[ready] cannot change. */
struct rout {
    struct rkept *k;
    int nk, ready, mdb_max;
    int out_end, data_end;
    struct result *r;
};

/* Raises frame i one bitrate step while the newest frame is being placed:
 * it grows at its end, every later frame (the newest too) starts that much
 * later, and all data stay where they are. false at the top index, or
 * when a later placed frame's main_data_begin would pass the limit. */
static bool rout_raise(struct rout *o, int i)
{
    struct rkept *c = &o->k[i];
    if (c->bi == 14)
        return false;
    int grow = size_of(c->version, c->bi + 1, c->ri, c->pad) - c->hs - c->cap;
    for (int j = i + 1; j < o->nk - 1; j++) {
        if (o->k[j].p + grow - o->k[j].s > o->mdb_max) {
            o->r->refused_mdb++;
            return false;
        }
    }
    for (int j = i + 1; j < o->nk; j++)
        o->k[j].p += grow;
    c->bi++;
    c->cap += grow;
    c->raised = true;
    o->r->raise_steps++;
    o->r->steps_older += i < o->nk - 2;
    return true;
}

/* One step for the first pending frame, newest first, from frame `from`
 * down to the oldest not ready, that can grow. */
static bool rout_raise_from(struct rout *o, int from)
{
    for (int i = from; i >= o->ready; i--) {
        if (rout_raise(o, i))
            return true;
    }
    return false;
}

enum { RSHIFT = 1 };

/* Places the kept frame u (parsed as f; data[0..f->len) its main data,
 * f->mdb bytes before its payload in its segment) as the splicer does:
 * where its encoder had it; when the previous frame's data end later (a
 * join), earlier frames grow until they do not, else the data start
 * there (allow_shift; else RSHIFT); when the data do not fit, this frame
 * grows, else the newest earlier one that can; else EFULL. Frames that
 * grew stay grown when it fails. */
static int rout_place(struct rout *o, const struct push *u, int from, const struct rframe *f,
                      const uint8_t *data, bool allow_shift)
{
    struct rkept *c = &o->k[o->nk++];
    memcpy(c->head, u->frame, (size_t)f->hs);
    c->from = from;
    c->hs = f->hs;
    c->version = f->version;
    c->ri = f->ri;
    c->bi = f->bi;
    c->pad = f->pad;
    c->cap = f->cap;
    c->mdb = f->mdb;
    c->len = f->len;
    c->p = o->out_end;
    c->raised = false;
    memcpy(c->data, data, (size_t)f->len);
    for (;;) {
        c->s = c->p - c->mdb > o->data_end ? c->p - c->mdb : o->data_end;
        if (c->s > c->p - c->mdb) {
            if (rout_raise_from(o, o->nk - 2))
                continue;
            if (!allow_shift) {
                o->out_end = c->p;
                o->nk--;
                return RSHIFT;
            }
        }
        if (c->s + c->len <= c->p + c->cap)
            break;
        if (!rout_raise_from(o, o->nk - 1)) {
            o->out_end = c->p;
            o->nk--;
            return MP3SPLICE_EFULL;
        }
    }
    o->data_end = c->s + c->len;
    o->out_end = c->p + c->cap;
    return 0;
}

/* Frames become ready, oldest first, once the output runs mdb_max bytes
 * past their payload's end; the newest never does. */
static void rout_mark_ready(struct rout *o)
{
    while (o->ready < o->nk - 1) {
        const struct rkept *c = &o->k[o->ready];
        if (o->out_end - o->mdb_max < c->p + c->cap)
            break;
        o->ready++;
    }
}

/* A segment's first frame not kept after kept ones (its post-roll): at
 * the next join it may stand in for that segment's first kept frame. */
struct rspare {
    bool have;
    int from;
    struct rframe f;
    uint8_t data[DATA_MAX];
};

/* The splice frame by frame, as the header describes it and the splicer
 * does it (see rout_place). */
static struct result *ref_splice(const struct plan *pl)
{
    struct result *r = result_new();
    uint8_t *seg = calloc(SEG_MAX, 1);
    struct rout o = {calloc(MAX_PUSH, sizeof(struct rkept)), 0, 0, 0, 0, 0, r};
    struct rspare *spare = calloc(1, sizeof *spare);
    int segpos = 0, seg_kept = 0;
    struct rframe first;

    assert_non_null(seg);
    assert_non_null(o.k);
    assert_non_null(spare);
    memset(&first, 0, sizeof first);
    for (int i = 0; i < pl->n && r->err == 0; i++) {
        const struct push *u = &pl->p[i];
        struct rframe f;
        r->err_at = i;
        if (u->begin || i == 0) {
            segpos = 0;
            seg_kept = 0;
        }
        if (!rparse(u->frame, (size_t)u->len, &f) || f.crc || f.size != u->len || u->len < f.hs) {
            r->err = MP3SPLICE_EFRAME;
            break;
        }
        if (i == 0) {
            first = f;
            o.mdb_max = mdb_max(f.version);
        } else if (f.version != first.version || f.ri != first.ri || f.channels != first.channels) {
            r->err = MP3SPLICE_ESTATE;
            break;
        }
        if (f.mdb > segpos || f.len > f.mdb + f.cap) {
            r->err = MP3SPLICE_EDATA;
            break;
        }
        memcpy(seg + segpos, u->frame + f.hs, (size_t)f.cap);
        const uint8_t *data = seg + segpos - f.mdb;
        segpos += f.cap;
        r->out_after[i] = o.ready;
        if (!u->keep) {
            if (seg_kept > 0 && !spare->have) {
                spare->have = true;
                spare->from = i;
                spare->f = f;
                memcpy(spare->data, data, (size_t)f.len);
            }
            continue;
        }
        int rc = RSHIFT;
        if (seg_kept == 0 && spare->have) {
            /* a try that does not work out gives back what it grew */
            int n = o.nk - o.ready, out_end = o.out_end;
            struct rkept *saved = malloc((size_t)(n > 0 ? n : 1) * sizeof(*saved));
            assert_non_null(saved);
            memcpy(saved, o.k + o.ready, (size_t)n * sizeof(*saved));
            rc = rout_place(&o, u, i, &f, data, false);
            if (rc == RSHIFT) {
                memcpy(o.k + o.ready, saved, (size_t)n * sizeof(*saved));
                o.out_end = out_end;
                rc =
                    rout_place(&o, &pl->p[spare->from], spare->from, &spare->f, spare->data, false);
                r->slid += rc == 0;
                if (rc == RSHIFT) {
                    memcpy(o.k + o.ready, saved, (size_t)n * sizeof(*saved));
                    o.out_end = out_end;
                }
            }
            free(saved);
        }
        if (rc == RSHIFT)
            rc = rout_place(&o, u, i, &f, data, true);
        if (rc != 0) {
            r->err = rc;
            break;
        }
        /* a spare is the first frame after its segment's last kept one */
        seg_kept++;
        spare->have = false;
        rout_mark_ready(&o);
        r->out_after[i] = o.ready;
    }
    if (r->err == 0)
        r->err_at = -1;

    /* What comes out: after an error, the frames placed before it. */
    uint8_t *stream = calloc((size_t)o.out_end + 1, 1);
    assert_non_null(stream);
    for (int j = 0; j < o.nk; j++)
        memcpy(stream + o.k[j].s, o.k[j].data, (size_t)o.k[j].len);
    for (int j = 0; j < o.nk; j++) {
        struct rkept *c = &o.k[j];
        c->head[2] = (uint8_t)(c->bi << 4 | (c->head[2] & 0x0f));
        put_bits(c->head + 4, 0, mdb_bits(c->version), (unsigned)(c->p - c->s));
        result_append(r, c->head, (size_t)c->hs);
        result_append(r, stream + c->p, (size_t)c->cap);
        r->raised += c->raised;
        r->from[j] = c->from;
    }
    r->nout = o.nk;
    free(stream);
    free(seg);
    free(spare);
    free(o.k);
    return r;
}

/* The plan's kept pushes, in order, into from; their number. */
static int kept_order(const struct plan *pl, int *from)
{
    int n = 0;
    for (int i = 0; i < pl->n; i++) {
        if (pl->p[i].keep)
            from[n++] = i;
    }
    return n;
}

/* Checks the output as a decoder reads it: frame i is push from[i] with
 * only its bitrate index and main_data_begin changed, and its main data,
 * found through main_data_begin, is the one it was encoded with; data
 * never overlap, and every byte outside them is zero. */
static void check_decodes(const struct plan *pl, const int *from, int n, const uint8_t *out,
                          size_t len)
{
    uint8_t *stream = calloc(len + 1, 1);
    uint8_t *covered = calloc(len + 1, 1);
    size_t off = 0;
    int pos = 0, prev_end = 0;

    assert_non_null(stream);
    assert_non_null(covered);
    for (int i = 0; i < n; i++) {
        const struct push *u = &pl->p[from[i]];
        struct rframe in, o;
        assert_true(rparse(u->frame, (size_t)u->len, &in));
        assert_true(off < len);
        assert_true(rparse(out + off, len - off, &o));
        assert_true(off + (size_t)o.size <= len);
        const uint8_t *f = out + off;
        /* Same header but the bitrate index, which only goes up. */
        assert_int_equal(f[1], u->frame[1]);
        assert_int_equal(f[2] & 0x0f, u->frame[2] & 0x0f);
        assert_int_equal(f[3], u->frame[3]);
        assert_true(o.bi >= in.bi);
        /* Same side info but main_data_begin. */
        uint8_t a[32], b[32];
        memcpy(a, f + 4, (size_t)o.side);
        memcpy(b, u->frame + 4, (size_t)in.side);
        put_bits(a, 0, mdb_bits(o.version), 0);
        put_bits(b, 0, mdb_bits(o.version), 0);
        assert_memory_equal(a, b, (size_t)o.side);
        assert_true(o.mdb <= mdb_max(o.version));
        assert_true(o.mdb <= pos);
        assert_true(o.len <= o.mdb + o.cap);
        assert_int_equal(o.len, u->dlen);
        memcpy(stream + pos, f + o.hs, (size_t)o.cap);
        int start = pos - o.mdb;
        assert_true(start >= prev_end);
        assert_memory_equal(stream + start, u->data, (size_t)o.len);
        memset(covered + start, 1, (size_t)o.len);
        prev_end = start + o.len;
        pos += o.cap;
        off += (size_t)o.size;
    }
    assert_int_equal(off, len);
    for (int i = 0; i < pos; i++) {
        if (!covered[i] && stream[i] != 0)
            print_error("stuffing byte %d of the output payload is %d\n", i, stream[i]);
        assert_true(covered[i] || stream[i] == 0);
    }
    free(stream);
    free(covered);
}

/* Splices the plan, popping after every push (eager) or only at the end,
 * and checks it against the reference: the frames out (after an error,
 * those placed before it), the error, and (eager) when each frame came
 * out. Frames come out one for one with the kept pushes, but for joins
 * that moved on (slid), and a decoder reads them right. */
static struct result *splice_checked(const struct plan *pl, bool eager)
{
    struct result *want = ref_splice(pl);
    struct result *got = run(pl, eager);
    int pushed = want->err == 0 ? pl->n : want->err_at;
    int kept[MAX_PUSH];

    assert_int_equal(got->err, want->err);
    assert_int_equal(got->err_at, want->err_at);
    for (int i = 0; i < pushed; i++) {
        if (got->out_after[i] != (eager ? want->out_after[i] : 0))
            print_error("after push %d: %d frames out, %d ready\n", i, got->out_after[i],
                        want->out_after[i]);
        assert_int_equal(got->out_after[i], eager ? want->out_after[i] : 0);
    }
    assert_int_equal(got->nout, want->nout);
    assert_int_equal(got->len, want->len);
    assert_memory_equal(got->out, want->out, want->len);
    assert_int_equal(got->slid, want->slid);
    if (want->err == 0) {
        if (got->raised != want->raised)
            print_error("raised %ld; the reference raised %ld frames, in %ld steps\n", got->raised,
                        want->raised, want->raise_steps);
        assert_int_equal(got->raised, want->raised);
    }
    const struct plan before = {pl->p, pushed};
    assert_int_equal(kept_order(&before, kept), got->nout);
    int other = 0;
    for (int i = 0; i < got->nout; i++)
        other += want->from[i] != kept[i];
    assert_int_equal(other, got->slid);
    check_decodes(pl, want->from, want->nout, got->out, got->len);
    /* The reference's counts, for the tests that ask for them. */
    got->raise_steps = want->raise_steps;
    got->steps_older = want->steps_older;
    got->refused_mdb = want->refused_mdb;
    memcpy(got->from, want->from, sizeof got->from);
    result_free(want);
    return got;
}

/* ---- header parsing ----------------------------------------------------- */

static void parse_ok(uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3, struct mp3_header *h)
{
    const uint8_t p[4] = {b0, b1, b2, b3};
    memset(h, 0x55, sizeof *h);
    assert_int_equal(mp3_header_parse(p, h), 0);
}

static void parse_bad(uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3)
{
    const uint8_t p[4] = {b0, b1, b2, b3};
    struct mp3_header h;
    if (mp3_header_parse(p, &h) != MP3SPLICE_EFRAME)
        print_error("header %02x %02x %02x %02x\n", b0, b1, b2, b3);
    assert_int_equal(mp3_header_parse(p, &h), MP3SPLICE_EFRAME);
}

static void header_known(void **state)
{
    struct mp3_header h;
    (void)state;
    /* MPEG-1 layer III, 128 kbit/s, 44.1 kHz, joint stereo, no CRC. */
    parse_ok(0xff, 0xfb, 0x90, 0x64, &h);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.bitrate_index, 9);
    assert_int_equal(h.bitrate, 128);
    assert_int_equal(h.sample_rate, 44100);
    assert_int_equal(h.padding, 0);
    assert_int_equal(h.channels, 2);
    assert_int_equal(h.crc, 0);
    assert_int_equal(h.size, 417);
    assert_int_equal(h.side_size, 32);
    parse_ok(0xff, 0xfb, 0x92, 0x64, &h);
    assert_int_equal(h.padding, 1);
    assert_int_equal(h.size, 418);
    /* Mono, with a CRC. */
    parse_ok(0xff, 0xfa, 0x90, 0xc4, &h);
    assert_int_equal(h.channels, 1);
    assert_int_equal(h.side_size, 17);
    assert_int_equal(h.crc, 1);
    assert_int_equal(h.size, 417);
    /* 320 kbit/s at 32 kHz, padded: the longest frame. */
    parse_ok(0xff, 0xfb, 0xea, 0x44, &h);
    assert_int_equal(h.bitrate, 320);
    assert_int_equal(h.sample_rate, 32000);
    assert_int_equal(h.size, MP3_FRAME_MAX);
    /* 32 kbit/s at 48 kHz. */
    parse_ok(0xff, 0xfb, 0x14, 0x00, &h);
    assert_int_equal(h.bitrate, 32);
    assert_int_equal(h.sample_rate, 48000);
    assert_int_equal(h.size, 96);
    assert_int_equal(h.channels, 2);
    /* MPEG-2, 64 kbit/s, 22.05 kHz. */
    parse_ok(0xff, 0xf3, 0x80, 0x64, &h);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.bitrate_index, 8);
    assert_int_equal(h.bitrate, 64);
    assert_int_equal(h.sample_rate, 22050);
    assert_int_equal(h.size, 208);
    assert_int_equal(h.side_size, 17);
    parse_ok(0xff, 0xf3, 0x82, 0xc4, &h);
    assert_int_equal(h.size, 209);
    assert_int_equal(h.side_size, 9);
    assert_int_equal(h.channels, 1);
    /* MPEG-2, 160 kbit/s at 24 kHz. */
    parse_ok(0xff, 0xf3, 0xe4, 0x64, &h);
    assert_int_equal(h.bitrate, 160);
    assert_int_equal(h.sample_rate, 24000);
    assert_int_equal(h.size, 480);
    /* MPEG-2.5: 8 kbit/s at 8 kHz, mono; 160 kbit/s at 8 kHz, padded. */
    parse_ok(0xff, 0xe3, 0x18, 0xc4, &h);
    assert_int_equal(h.version, 25);
    assert_int_equal(h.bitrate, 8);
    assert_int_equal(h.sample_rate, 8000);
    assert_int_equal(h.size, 72);
    assert_int_equal(h.side_size, 9);
    parse_ok(0xff, 0xe3, 0xea, 0x64, &h);
    assert_int_equal(h.size, MP3_FRAME_MAX);
    assert_int_equal(h.side_size, 17);
    parse_ok(0xff, 0xe3, 0x90, 0x64, &h);
    assert_int_equal(h.sample_rate, 11025);
    assert_int_equal(h.bitrate, 80);
    assert_int_equal(h.size, 522);
}

static void header_refused(void **state)
{
    (void)state;
    parse_bad(0xfe, 0xfb, 0x90, 0x64); /* sync */
    parse_bad(0xff, 0xdb, 0x90, 0x64); /* sync */
    parse_bad(0x00, 0x00, 0x00, 0x00);
    parse_bad(0xff, 0xff, 0x90, 0x64); /* layer I */
    parse_bad(0xff, 0xfd, 0x90, 0x64); /* layer II */
    parse_bad(0xff, 0xf9, 0x90, 0x64); /* layer 00, reserved */
    parse_bad(0xff, 0xf5, 0x90, 0x64); /* MPEG-2 layer II */
    parse_bad(0xff, 0xfb, 0x00, 0x64); /* free format */
    parse_bad(0xff, 0xfb, 0x02, 0x64); /* free format, padded */
    parse_bad(0xff, 0xfb, 0xf0, 0x64); /* bitrate index 15 */
    parse_bad(0xff, 0xf3, 0xf0, 0x64); /* bitrate index 15, MPEG-2 */
    parse_bad(0xff, 0xfb, 0x9c, 0x64); /* rate index 3 */
    parse_bad(0xff, 0xe3, 0x9c, 0x64); /* rate index 3, MPEG-2.5 */
    parse_bad(0xff, 0xeb, 0x90, 0x64); /* version 01, reserved */
}

/* Every header with a zero emphasis against the test's own parser. */
static void header_all(void **state)
{
    static const uint8_t third[] = {0x00, 0x44, 0x64, 0x7c, 0x84, 0xc0, 0xcd};
    (void)state;
    for (int b1 = 0; b1 < 256; b1++) {
        for (int b2 = 0; b2 < 256; b2++) {
            for (size_t t = 0; t < sizeof third; t++) {
                const uint8_t p[4] = {0xff, (uint8_t)b1, (uint8_t)b2, third[t]};
                struct rframe r;
                struct mp3_header h;
                bool want = rparse(p, 4, &r);
                int rc = mp3_header_parse(p, &h);
                if ((rc == 0) != want)
                    print_error("header ff %02x %02x %02x: got %d\n", b1, b2, third[t], rc);
                assert_int_equal(rc, want ? 0 : MP3SPLICE_EFRAME);
                if (!want)
                    continue;
                assert_int_equal(h.version, r.version);
                assert_int_equal(h.bitrate_index, r.bi);
                assert_int_equal(h.bitrate, kbps_tab[r.version != 1][r.bi]);
                assert_int_equal(h.sample_rate, rate_of(r.version, r.ri));
                assert_int_equal(h.padding, r.pad);
                assert_int_equal(h.channels, r.channels);
                assert_int_equal(h.crc, r.crc);
                assert_int_equal(h.size, r.size);
                assert_int_equal(h.side_size, r.side);
                assert_int_equal(mp3_frame_size(r.version, r.bi, h.sample_rate, r.pad), r.size);
            }
        }
    }
}

static void frame_size(void **state)
{
    (void)state;
    assert_int_equal(mp3_frame_size(1, 9, 44100, 0), 417);
    assert_int_equal(mp3_frame_size(1, 9, 44100, 1), 418);
    assert_int_equal(mp3_frame_size(1, 1, 48000, 0), 96);
    assert_int_equal(mp3_frame_size(1, 14, 32000, 1), MP3_FRAME_MAX);
    assert_int_equal(mp3_frame_size(1, 14, 44100, 0), 1044);
    assert_int_equal(mp3_frame_size(2, 8, 22050, 0), 208);
    assert_int_equal(mp3_frame_size(2, 14, 24000, 0), 480);
    assert_int_equal(mp3_frame_size(2, 1, 16000, 1), 37);
    assert_int_equal(mp3_frame_size(25, 1, 8000, 0), 72);
    assert_int_equal(mp3_frame_size(25, 14, 8000, 1), MP3_FRAME_MAX);
    assert_int_equal(mp3_frame_size(25, 9, 11025, 0), 522);
    /* No such frame. */
    assert_int_equal(mp3_frame_size(1, 0, 44100, 0), 0);
    assert_int_equal(mp3_frame_size(1, 15, 44100, 0), 0);
    assert_int_equal(mp3_frame_size(3, 9, 44100, 0), 0);
    assert_int_equal(mp3_frame_size(1, 9, 22050, 0), 0);
    assert_int_equal(mp3_frame_size(2, 9, 44100, 0), 0);
    assert_int_equal(mp3_frame_size(25, 9, 22050, 0), 0);
    assert_int_equal(mp3_frame_size(1, 9, 44000, 0), 0);
}

/* ---- splicing ----------------------------------------------------------- */

static const struct fmt fm_44s = {1, 0, 2};  /* MPEG-1 44.1 kHz stereo */
static const struct fmt fm_48m = {1, 1, 1};  /* MPEG-1 48 kHz mono */
static const struct fmt fm_48s = {1, 1, 2};  /* MPEG-1 48 kHz stereo */
static const struct fmt fm_32s = {1, 2, 2};  /* MPEG-1 32 kHz stereo */
static const struct fmt fm_22s = {2, 0, 2};  /* MPEG-2 22.05 kHz stereo */
static const struct fmt fm_24m = {2, 1, 1};  /* MPEG-2 24 kHz mono */
static const struct fmt fm_24s = {2, 1, 2};  /* MPEG-2 24 kHz stereo */
static const struct fmt fm_16s = {2, 2, 2};  /* MPEG-2 16 kHz stereo */
static const struct fmt fm_8m = {25, 2, 1};  /* MPEG-2.5 8 kHz mono */
static const struct fmt fm_11s = {25, 0, 2}; /* MPEG-2.5 11.025 kHz stereo */

static const struct fmt *const all_fmts[] = {&fm_44s, &fm_48m, &fm_48s, &fm_32s, &fm_22s,
                                             &fm_24m, &fm_24s, &fm_16s, &fm_8m,  &fm_11s};
#define NFMTS (sizeof all_fmts / sizeof all_fmts[0])

/* How many kept frames a splicer may hold: those a later frame's data can
 * still reach, plus the last (a later frame may raise it) and some slack. */
static int held_bound(const struct fmt *fm, int min_cap)
{
    return (mdb_max(fm->version) + min_cap - 1) / min_cap + 3;
}

/* One segment, all kept, through the reservoir: the output is the input. */
static void one_segment_identity(const struct fmt *fm, int bi, uint32_t seed, int n)
{
    struct plan pl;
    struct enc e;
    uint32_t rng = seed;

    plan_init(&pl);
    enc_begin(&e, &pl, fm, seed);
    for (int i = 0; i < n; i++) {
        int pad = (int)(rnd(&rng) % 2);
        int cap = enc_cap(&e, bi, pad);
        int room = enc_room(&e, bi, pad);
        /* Small and big frames in turn, so that the reservoir fills and
         * empties. */
        int len = i % 3 == 2 ? room : cap / 3 + (int)(rnd(&rng) % (cap / 3 + 1));
        if (len > room)
            len = room;
        enc_frame(&e, bi, pad, 0, len, true);
    }
    assert_true(e.mdb_seen > n / 4);
    enc_end(&e);
    /* The first push begins the first segment by itself. */
    pl.p[0].begin = false;
    plan_extract(&pl, true);

    struct result *r = splice_checked(&pl, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->nout, n);
    assert_int_equal(r->raised, 0);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)pl.p[i].len;
    assert_int_equal(r->len, total);
    for (size_t off = 0, i = 0; i < (size_t)n; off += (size_t)pl.p[i].len, i++)
        assert_memory_equal(r->out + off, pl.p[i].frame, (size_t)pl.p[i].len);
    /* Frames come out as they are done, the last ones only at the end. */
    assert_true(r->before_finish < n);
    int min_cap = enc_cap(&e, bi, 0);
    assert_true(r->max_held <= held_bound(fm, min_cap));
    assert_true(r->before_finish >= n - held_bound(fm, min_cap));
    result_free(r);

    /* Popping only at the end gives the same. */
    r = splice_checked(&pl, false);
    assert_int_equal(r->before_finish, 0);
    assert_int_equal(r->nout, n);
    result_free(r);
    plan_cleanup(&pl);
}

static void one_segment(void **state)
{
    (void)state;
    one_segment_identity(&fm_44s, 9, 11, 40);
    one_segment_identity(&fm_48m, 5, 12, 40);
    one_segment_identity(&fm_22s, 8, 13, 40);
    one_segment_identity(&fm_24m, 6, 14, 40);
    one_segment_identity(&fm_8m, 2, 15, 40);
    one_segment_identity(&fm_11s, 14, 16, 20);
}

/* The pop order: one frame per kept push, in order, none for pre-roll. */
static void pops_in_order(void **state)
{
    struct plan pl;
    struct enc e;
    (void)state;
    plan_init(&pl);
    enc_begin(&e, &pl, &fm_44s, 3);
    for (int i = 0; i < 12; i++)
        enc_frame(&e, 9, 0, 0, 100 + i, i != 3 && i != 7);
    enc_end(&e);

    struct mp3splice *s = mp3splice_new();
    const uint8_t *f;
    size_t len;
    int popped = 0;
    assert_non_null(s);
    assert_false(mp3splice_pop(s, &f, &len));
    for (int i = 0; i < pl.n; i++) {
        assert_int_equal(mp3splice_push(s, pl.p[i].frame, (size_t)pl.p[i].len, pl.p[i].keep), 0);
        while (mp3splice_pop(s, &f, &len)) {
            struct rframe r;
            int want = popped < 3 ? popped : popped < 6 ? popped + 1 : popped + 2;
            assert_true(want <= i);
            assert_int_equal(len, 417);
            assert_true(rparse(f, len, &r));
            assert_int_equal(r.len, pl.p[want].dlen);
            popped++;
        }
    }
    assert_true(popped < 10);
    mp3splice_finish(s);
    assert_int_equal(mp3splice_push(s, pl.p[0].frame, (size_t)pl.p[0].len, true), MP3SPLICE_ESTATE);
    while (mp3splice_pop(s, &f, &len))
        popped++;
    assert_int_equal(popped, 10);
    assert_false(mp3splice_pop(s, &f, &len));
    assert_int_equal(mp3splice_raised(s), 0);
    mp3splice_free(s);
    plan_cleanup(&pl);
}

/* Segment A, then B with two pre-roll frames that hold the data of B's
 * first kept frame. a_free: free bytes at the end of A's last frame. */
static void join_plan(struct plan *pl, const struct fmt *fm, int bi_a, int bi_b, int a_free,
                      int b_mdb, int b_len, uint32_t seed)
{
    struct enc e;
    uint32_t rng = seed;

    enc_begin(&e, pl, fm, seed);
    for (int i = 0; i < 5; i++) {
        int room = enc_room(&e, bi_a, 0);
        enc_frame(&e, bi_a, 0, 0, (int)(rnd(&rng) % (room + 1)), true);
    }
    /* The last frame's data end a_free bytes before its end. */
    int most = nblocks(fm->version, fm->channels) * 4095 / 8;
    int end = e.pos + enc_cap(&e, bi_a, 0) - a_free;
    int start = end - most > enc_start(&e) ? end - most : enc_start(&e);
    assert_true(start <= e.pos);
    enc_frame_at(&e, bi_a, 0, e.pos - start, end - start, true);
    enc_end(&e);

    enc_begin(&e, pl, fm, seed + 1);
    int cap = enc_cap(&e, bi_b, 0);
    /* The pre-roll's data runs up to where B's first kept frame's begins. */
    enc_frame(&e, bi_b, 0, 0, cap / 2, false);
    int len1 = 2 * cap - b_mdb - enc_start(&e);
    enc_frame(&e, bi_b, 0, 0, len1 < most ? len1 : most, false);
    enc_frame_at(&e, bi_b, 0, b_mdb, b_len, true);
    for (int i = 0; i < 6; i++) {
        int room = enc_room(&e, bi_b, 0);
        /* Half the room at most, so that data moved later at the join
         * never need a bigger frame further on. */
        enc_frame(&e, bi_b, 0, 0, (int)(rnd(&rng) % (room / 2 + 1)), true);
    }
    enc_end(&e);
    plan_extract(pl, true);
}

/* Frame i of the output: where it starts. */
static size_t out_frame(const struct result *r, int i, struct rframe *f)
{
    size_t off = 0;
    for (int j = 0;; j++) {
        assert_true(off < r->len);
        assert_true(rparse(r->out + off, r->len - off, f));
        if (j == i)
            return off;
        off += (size_t)f->size;
    }
}

/* The smallest bitrate index from bi up whose frame is at least need bytes
 * bigger than bi's. */
static int index_for(const struct fmt *fm, int bi, int need)
{
    int up = bi;
    while (size_of(fm->version, up, fm->ri, 0) - size_of(fm->version, bi, fm->ri, 0) < need)
        up++;
    assert_true(up <= 14);
    return up;
}

static void two_segments(void **state)
{
    (void)state;
    for (size_t n = 0; n < NFMTS; n++) {
        const struct fmt *fm = all_fmts[n];
        int bi = fm->version == 1 ? 9 : 8;
        struct plan pl;
        struct enc probe;
        probe.fm = *fm;
        int cap = enc_cap(&probe, bi, 0);
        int mdb = (cap < mdb_max(fm->version) ? cap : mdb_max(fm->version)) / 2;
        int len = mdb + cap / 2;
        int most = nblocks(fm->version, fm->channels) * 4095 / 8;
        if (len > most)
            len = most;

        /* A's last frame leaves more room than B's first needs: the data
         * keep their places, main_data_begin and all. */
        plan_init(&pl);
        join_plan(&pl, fm, bi, bi, mdb + 5, mdb, len, (uint32_t)(100 + n));
        assert_int_equal(pl.p[8].keep, true);
        assert_false(pl.p[6].keep);
        assert_true(pl.p[6].begin);
        struct result *r = splice_checked(&pl, true);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->raised, 0);
        size_t total = 0;
        for (int i = 0; i < pl.n; i++)
            total += pl.p[i].keep ? (size_t)pl.p[i].len : 0;
        assert_int_equal(r->len, total);
        struct rframe f;
        out_frame(r, 6, &f);
        assert_int_equal(f.mdb, mdb);
        result_free(r);
        plan_cleanup(&pl);

        /* Less room than main_data_begin: B's data would start after A's,
         * later than B's encoder had them, so A's last frame grows until
         * they need not (by mdb - mdb / 2 bytes at least). */
        plan_init(&pl);
        join_plan(&pl, fm, bi, bi, mdb / 2, mdb, mdb, (uint32_t)(200 + n));
        for (int pass = 0; pass < 2; pass++) {
            r = splice_checked(&pl, pass == 0);
            assert_int_equal(r->err, 0);
            assert_int_equal(r->raised, 1);
            out_frame(r, 5, &f);
            assert_int_equal(f.bi, index_for(fm, bi, mdb - mdb / 2));
            out_frame(r, 6, &f);
            assert_int_equal(f.bi, bi);
            assert_int_equal(f.mdb, mdb);
            result_free(r);
        }
        plan_cleanup(&pl);

        /* The same with A at the top bitrate, where nothing can grow (its
         * frames are longer than main_data_begin reaches, so only its
         * last is pending): B's data start right after A's, nearer their
         * frame. B's next frame's data then need not start later than
         * their encoder had them: B's first frame grows if need be. */
        if (enc_cap(&probe, 14, 0) - mdb / 2 > most)
            continue; /* MPEG-2.5 mono: A's last frame cannot be that full */
        plan_init(&pl);
        join_plan(&pl, fm, 14, bi, mdb / 2, mdb, mdb, (uint32_t)(300 + n));
        r = splice_checked(&pl, true);
        assert_int_equal(r->err, 0);
        assert_true(r->raised <= 1);
        out_frame(r, 5, &f);
        assert_int_equal(f.bi, 14);
        out_frame(r, 6, &f);
        assert_int_equal(f.mdb, mdb / 2);
        struct rframe in;
        assert_true(rparse(pl.p[9].frame, (size_t)pl.p[9].len, &in));
        out_frame(r, 7, &f);
        assert_int_equal(f.mdb, in.mdb);
        result_free(r);
        plan_cleanup(&pl);
    }
}

/* A's last frame, at the top bitrate, is full to its last byte, and B's
 * first kept frame's data, starting right after, need more than its own
 * payload: B's frame gets a higher bitrate. */
static void raise_current(void **state)
{
    struct plan pl;
    struct rframe f;
    (void)state;
    plan_init(&pl);
    /* 128 kbit/s at 44.1 kHz: payload 381 bytes; the data need 500, which
     * 192 kbit/s (590) holds and 160 kbit/s (486) does not. */
    join_plan(&pl, &fm_44s, 14, 9, 0, 200, 500, 7);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->raised, 1);
        out_frame(r, 5, &f);
        assert_int_equal(f.bi, 14);
        out_frame(r, 6, &f);
        assert_int_equal(f.bi, 11);
        assert_int_equal(f.size, 626);
        assert_int_equal(f.mdb, 0);
        result_free(r);
    }
    plan_cleanup(&pl);

    /* The same in MPEG-2 mono at 22.05 kHz: 64 kbit/s, payload 195; 80
     * kbit/s holds 248. B's next frame's data, where its encoder had them
     * (a frame's data start as early as they can), may ask for more. */
    plan_init(&pl);
    join_plan(&pl, &(struct fmt){2, 0, 1}, 14, 8, 0, 150, 240, 8);
    struct result *r = splice_checked(&pl, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->raised, 1);
    out_frame(r, 6, &f);
    assert_true(f.bi >= 9); /* more if B's next frame's data need it */
    assert_int_equal(f.mdb, 0);
    result_free(r);
    plan_cleanup(&pl);
}

/* B's first kept frame's data would start later than its encoder had
 * them: A's last frame grows instead, step by step, until they need not. */
static void raise_previous(void **state)
{
    struct plan pl;
    struct rframe f;
    (void)state;
    plan_init(&pl);
    /* A at 128 kbit/s, full to its end; B at 128 kbit/s with 500 bytes of
     * data from 200 back: A's last frame goes to 192 kbit/s (+209). */
    join_plan(&pl, &fm_44s, 9, 9, 0, 200, 500, 7);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->raised, 1);
        out_frame(r, 4, &f);
        assert_int_equal(f.bi, 9);
        out_frame(r, 5, &f);
        assert_int_equal(f.bi, 11);
        out_frame(r, 6, &f);
        assert_int_equal(f.bi, 9);
        assert_int_equal(f.mdb, 200);
        result_free(r);
    }
    plan_cleanup(&pl);

    /* A at 128 kbit/s, 10 bytes free; B at 320 kbit/s with data from 400
     * back: 390 bytes to make up, which 256 kbit/s (+418) does and 224
     * kbit/s (+314) does not. */
    plan_init(&pl);
    join_plan(&pl, &fm_44s, 9, 14, 10, 400, 1200, 9);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->raised, 1);
        out_frame(r, 5, &f);
        assert_int_equal(f.bi, 13);
        out_frame(r, 6, &f);
        assert_int_equal(f.bi, 14);
        assert_int_equal(f.mdb, 400);
        result_free(r);
    }
    plan_cleanup(&pl);
}

/* Segment A: four frames at index bi_a whose data are few and early, then
 * one at bi_prev whose data run from prev_mdb bytes back to its end.
 * Segment B, at the top index: a pre-roll frame, then b_len bytes of data
 * from mdb_max back (the most a join can have to make up), then three
 * small frames. */
static void older_plan(struct plan *pl, const struct fmt *fm, int bi_a, int bi_prev, int prev_mdb,
                       int b_len, uint32_t seed)
{
    struct enc e;
    enc_begin(&e, pl, fm, seed);
    for (int i = 0; i < 4; i++)
        enc_frame(&e, bi_a, 0, 0, enc_cap(&e, bi_a, 0) / 8, true);
    enc_frame_at(&e, bi_prev, 0, prev_mdb, prev_mdb + enc_cap(&e, bi_prev, 0), true);
    enc_end(&e);

    enc_begin(&e, pl, fm, seed + 1);
    int top = enc_cap(&e, 14, 0), most = mdb_max(fm->version);
    enc_frame_at(&e, 14, 0, 0, top - most, false);
    enc_frame_at(&e, 14, 0, most, b_len, true);
    for (int i = 0; i < 3; i++)
        enc_frame(&e, 14, 0, 0, top / 4, true);
    enc_end(&e);
    plan_extract(pl, true);
}

/*
 * A frame older than the previous one grows. It must be pending (not
 * ready): the output had not run mdb_max bytes past its end, so the frames
 * after it are short, while a payload at the top index is longer than
 * mdb_max in every format. So the previous frame was short when pushed,
 * reached the top while the join was being made up (it is tried first),
 * and that was not enough: a join makes up at most mdb_max bytes, so the
 * previous frame's payload must lie between the top payload minus mdb_max
 * and mdb_max. Only 48 and 24 kHz have such a bitrate.
 *
 * 48 kHz stereo: A at 128 kbit/s (payload 348); its last frame at 160
 * kbit/s (444), full to its end, leaves the frame before it pending (444 <
 * 511). B's data start 511 bytes back: 320 kbit/s (+480) leaves 31 to make
 * up, and the frame before grows to 160 kbit/s (+96).
 */
static void raise_older(void **state)
{
    struct plan pl;
    struct rframe f;
    (void)state;
    plan_init(&pl);
    older_plan(&pl, &fm_48s, 9, 10, 0, 1000, 31);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        if (pass == 0) {
            /* After A's last push, its frame before the last is pending. */
            assert_int_equal(r->out_after[4], 3);
        }
        assert_int_equal(r->raised, 2);
        assert_int_equal(r->steps_older, 1);
        out_frame(r, 2, &f);
        assert_int_equal(f.bi, 9);
        out_frame(r, 3, &f);
        assert_int_equal(f.bi, 10);
        assert_int_equal(f.size, 480);
        out_frame(r, 4, &f);
        assert_int_equal(f.bi, 14);
        assert_int_equal(f.mdb, 96); /* its data stayed; it starts later */
        out_frame(r, 5, &f);
        assert_int_equal(f.bi, 14);
        assert_int_equal(f.mdb, 511); /* where its encoder had it */
        result_free(r);
    }
    plan_cleanup(&pl);
}

/* The frame before the previous one cannot grow: the previous frame's
 * data start 450 bytes back, and 96 more would pass 511; the frames
 * before it are ready. (An older pending frame could only succeed by
 * growing less, but where frames can be pending the short bitrates all
 * grow by the same 24 bytes, and it would move the previous frame as
 * far.) */
static void raise_refused(void **state)
{
    struct plan pl;
    struct rframe f;
    (void)state;
    /* B's data fit 480 bytes back: they start there, 31 bytes later than
     * their encoder had them. */
    plan_init(&pl);
    older_plan(&pl, &fm_48s, 9, 10, 450, 1000, 32);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->raised, 1);
        assert_int_equal(r->steps_older, 0);
        assert_true(r->refused_mdb > 0);
        out_frame(r, 3, &f);
        assert_int_equal(f.bi, 9);
        out_frame(r, 4, &f);
        assert_int_equal(f.bi, 14);
        assert_int_equal(f.mdb, 450);
        out_frame(r, 5, &f);
        assert_int_equal(f.bi, 14);
        assert_int_equal(f.mdb, 480);
        result_free(r);
    }
    plan_cleanup(&pl);

    /* They do not: 511 + 924 bytes from 480 back run 31 past the frame. */
    plan_init(&pl);
    older_plan(&pl, &fm_48s, 9, 10, 450, 511 + 924, 33);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, MP3SPLICE_EFULL);
        assert_int_equal(r->err_at, 6);
        /* A's frames still come out, its last at the top. */
        assert_int_equal(r->nout, 5);
        out_frame(r, 4, &f);
        assert_int_equal(f.bi, 14);
        assert_int_equal(f.mdb, 450);
        result_free(r);
    }
    plan_cleanup(&pl);
}

/* MPEG-2 (main_data_begin up to 255), 24 kHz stereo. A at 40 kbit/s
 * (payload 99), its last frame at 80 kbit/s (219 < 255); B's data start
 * 255 bytes back: 160 kbit/s (+240) leaves 15 to make up. */
static void raise_older_mpeg2(void **state)
{
    struct plan pl;
    struct rframe f;
    (void)state;
    /* The frame before grows to 48 kbit/s (+24). */
    plan_init(&pl);
    older_plan(&pl, &fm_24s, 5, 9, 0, 400, 41);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->raised, 2);
        out_frame(r, 3, &f);
        assert_int_equal(f.bi, 6);
        out_frame(r, 4, &f);
        assert_int_equal(f.bi, 14);
        assert_int_equal(f.mdb, 24);
        out_frame(r, 5, &f);
        assert_int_equal(f.mdb, 255);
        result_free(r);
    }
    plan_cleanup(&pl);

    /* The last frame's data start 232 bytes back: 24 more would pass 255.
     * B's data start 240 back instead, and fit. */
    plan_init(&pl);
    older_plan(&pl, &fm_24s, 5, 9, 232, 400, 42);
    struct result *r = splice_checked(&pl, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->raised, 1);
    assert_true(r->refused_mdb > 0);
    out_frame(r, 3, &f);
    assert_int_equal(f.bi, 5);
    out_frame(r, 4, &f);
    assert_int_equal(f.mdb, 232);
    out_frame(r, 5, &f);
    assert_int_equal(f.mdb, 240);
    result_free(r);
    plan_cleanup(&pl);

    /* 255 + 459 bytes of data do not fit from 240 back. */
    plan_init(&pl);
    older_plan(&pl, &fm_24s, 5, 9, 232, 255 + 459, 43);
    r = splice_checked(&pl, false);
    assert_int_equal(r->err, MP3SPLICE_EFULL);
    assert_int_equal(r->err_at, 6);
    assert_int_equal(r->nout, 5);
    result_free(r);
    plan_cleanup(&pl);
}

/* A's frames are at the top bitrate, so nothing can grow, and B's first
 * kept frame's data cannot start where its encoder had them: A's first
 * post-roll frame, which covers the same samples and whose data follow
 * A's, comes out in its place. */
static void join_slides(void **state)
{
    struct plan pl;
    struct enc e;
    struct rframe f;
    (void)state;
    plan_init(&pl);
    enc_begin(&e, &pl, &fm_44s, 51);
    for (int i = 0; i < 3; i++)
        enc_frame(&e, 14, 0, 0, 900, true);
    enc_frame(&e, 14, 0, 0, enc_room(&e, 14, 0), true); /* full to its end */
    struct push *post = enc_frame(&e, 14, 0, 0, 300, false);
    enc_frame(&e, 14, 0, 0, 300, false);
    enc_end(&e);
    enc_begin(&e, &pl, &fm_44s, 52);
    enc_frame_at(&e, 14, 0, 0, 1008 - 300, false);
    enc_frame_at(&e, 14, 0, 300, 800, true);
    for (int i = 0; i < 3; i++)
        enc_frame(&e, 14, 0, 0, 500, true);
    enc_end(&e);
    plan_extract(&pl, true);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->slid, 1);
        assert_int_equal(r->raised, 0);
        assert_int_equal(r->nout, 8);
        assert_ptr_equal(&pl.p[r->from[4]], post);
        size_t off = out_frame(r, 4, &f);
        assert_int_equal(f.mdb, 0);
        assert_memory_equal(r->out + off + 4 + 32, post->data, 300);
        result_free(r);
    }
    plan_cleanup(&pl);
}

/* A frame not kept in the middle of a segment is no stand-in: only one
 * after the segment's last kept frame is. The same join as join_slides,
 * but A's only frame not kept is followed by kept ones and A has no
 * post-roll: B's frame comes out, its data shifted. */
static void no_spare_mid_segment(void **state)
{
    struct plan pl;
    struct enc e;
    struct rframe f;
    (void)state;
    plan_init(&pl);
    enc_begin(&e, &pl, &fm_44s, 61);
    enc_frame(&e, 14, 0, 0, 900, true);
    struct push *mid = enc_frame_at(&e, 14, 0, 0, 300, false); /* could stand in */
    enc_frame_at(&e, 14, 0, 0, 900, true);                     /* nothing of it in mid's payload */
    enc_frame(&e, 14, 0, 0, enc_room(&e, 14, 0), true);        /* full to its end */
    enc_end(&e);
    enc_begin(&e, &pl, &fm_44s, 62);
    enc_frame_at(&e, 14, 0, 0, 1008 - 300, false);
    struct push *b = enc_frame_at(&e, 14, 0, 300, 800, true);
    enc_frame(&e, 14, 0, 0, 500, true);
    enc_end(&e);
    plan_extract(&pl, true);
    for (int pass = 0; pass < 2; pass++) {
        struct result *r = splice_checked(&pl, pass == 0);
        assert_int_equal(r->err, 0);
        assert_int_equal(r->slid, 0);
        assert_int_equal(r->nout, 5);
        for (int i = 0; i < r->nout; i++)
            assert_ptr_not_equal(&pl.p[r->from[i]], mid);
        assert_ptr_equal(&pl.p[r->from[3]], b);
        out_frame(r, 3, &f);
        assert_int_equal(f.mdb, 0); /* shifted: A left no room */
        result_free(r);
    }
    plan_cleanup(&pl);
}

/* Nothing can make room: both frames are at the top bitrate. */
static void full(void **state)
{
    struct plan pl;
    (void)state;
    for (size_t n = 0; n < NFMTS; n++) {
        const struct fmt *fm = all_fmts[n];
        struct enc e;
        plan_init(&pl);
        enc_begin(&e, &pl, fm, 5);
        enc_frame(&e, 14, 0, 0, enc_room(&e, 14, 0), true);
        enc_end(&e);
        enc_begin(&e, &pl, fm, 6);
        enc_frame(&e, 14, 0, 0, enc_room(&e, 14, 0) / 2, false);
        int mdb = enc_cap(&e, 14, 0) - enc_room(&e, 14, 0) / 2;
        if (mdb > mdb_max(fm->version))
            mdb = mdb_max(fm->version);
        int len = mdb + enc_cap(&e, 14, 0);
        int most = nblocks(fm->version, fm->channels) * 4095 / 8;
        if (len > most)
            len = most;
        struct push *b = enc_frame_at(&e, 14, 0, mdb, len, true);
        enc_end(&e);
        if (b->dlen <= enc_cap(&e, 14, 0)) {
            /* MPEG-2 mono: 4095 bits of data fit any top-bitrate frame. */
            plan_cleanup(&pl);
            continue;
        }
        struct result *r = splice_checked(&pl, false);
        assert_int_equal(r->err, MP3SPLICE_EFULL);
        assert_int_equal(r->err_at, 2);
        result_free(r);

        /* No earlier kept frame at all: the first kept frame of the
         * output cannot borrow from dropped pre-roll. */
        struct plan tail = {pl.p + 1, 2};
        r = splice_checked(&tail, false);
        assert_int_equal(r->err, MP3SPLICE_EFULL);
        assert_int_equal(r->err_at, 1);
        result_free(r);

        /* After EFULL every push fails. */
        struct mp3splice *s = mp3splice_new();
        assert_non_null(s);
        for (int i = 0; i < pl.n; i++) {
            if (pl.p[i].begin)
                mp3splice_begin_segment(s);
            int rc = mp3splice_push(s, pl.p[i].frame, (size_t)pl.p[i].len, pl.p[i].keep);
            assert_int_equal(rc, i < 2 ? 0 : MP3SPLICE_EFULL);
        }
        mp3splice_begin_segment(s);
        assert_true(mp3splice_push(s, pl.p[0].frame, (size_t)pl.p[0].len, true) < 0);
        mp3splice_finish(s);
        const uint8_t *f;
        size_t len2;
        int popped = 0;
        while (mp3splice_pop(s, &f, &len2)) {
            assert_int_equal(len2, (size_t)pl.p[0].len);
            popped++;
        }
        assert_true(popped <= 1);
        mp3splice_free(s);
        plan_cleanup(&pl);
    }
}

/* ---- errors ------------------------------------------------------------- */

/* A fresh splicer fed frames made by make_frame; returns the last push's
 * result, checking that all before it passed and that it sticks. */
static int push_frames(const struct fmt *const *fms, const int *mdb, const int *len, int n,
                       const int *begin)
{
    uint8_t f[MP3_FRAME_MAX];
    uint32_t rng = 77;
    int rc = 0;
    struct mp3splice *s = mp3splice_new();
    assert_non_null(s);
    for (int i = 0; i < n; i++) {
        int size = make_frame(f, fms[i], 9, 0, mdb[i], len[i], &rng);
        if (begin != NULL && begin[i])
            mp3splice_begin_segment(s);
        rc = mp3splice_push(s, f, (size_t)size, true);
        if (i < n - 1)
            assert_int_equal(rc, 0);
    }
    if (rc != 0) {
        /* A good frame is refused from now on. */
        int size = make_frame(f, fms[0], 9, 0, 0, 10, &rng);
        assert_true(mp3splice_push(s, f, (size_t)size, true) < 0);
        mp3splice_begin_segment(s);
        assert_true(mp3splice_push(s, f, (size_t)size, true) < 0);
    }
    mp3splice_finish(s);
    const uint8_t *out;
    size_t outlen;
    int popped = 0;
    while (mp3splice_pop(s, &out, &outlen))
        popped++;
    /* The refused frame never comes out. */
    assert_true(popped <= (rc == 0 ? n : n - 1));
    mp3splice_free(s);
    return rc;
}

static void bad_frames(void **state)
{
    uint8_t f[MP3_FRAME_MAX + 8];
    uint32_t rng = 1;
    struct mp3splice *s;
    (void)state;

    memset(f, 0, sizeof f);
    int size = make_frame(f, &fm_44s, 9, 0, 0, 100, &rng);
    assert_int_equal(size, 417);
    const size_t lens[] = {416, 418, 0, 3, 4, 36, MP3_FRAME_MAX + 8};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        s = mp3splice_new();
        assert_non_null(s);
        assert_int_equal(mp3splice_push(s, f, lens[i], true), MP3SPLICE_EFRAME);
        assert_true(mp3splice_push(s, f, 417, true) < 0);
        mp3splice_free(s);
    }

    /* A CRC after the header. */
    s = mp3splice_new();
    assert_non_null(s);
    f[1] &= 0xfe;
    assert_int_equal(mp3splice_push(s, f, 417, true), MP3SPLICE_EFRAME);
    f[1] |= 0x01;
    assert_true(mp3splice_push(s, f, 417, true) < 0);
    mp3splice_free(s);

    /* Layer II, free format, garbage. */
    const uint8_t heads[][4] = {
        {0xff, 0xfd, 0x90, 0x64}, {0xff, 0xfb, 0x00, 0x64}, {0x49, 0x44, 0x33, 0x04}};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        uint8_t g[417];
        memcpy(g, f, sizeof g);
        memcpy(g, heads[i], 4);
        s = mp3splice_new();
        assert_non_null(s);
        assert_int_equal(mp3splice_push(s, g, sizeof g, true), MP3SPLICE_EFRAME);
        mp3splice_free(s);
    }

    /* A good frame after a bad one in a new splicer is fine. */
    s = mp3splice_new();
    assert_non_null(s);
    assert_int_equal(mp3splice_push(s, f, 417, true), 0);
    mp3splice_finish(s);
    const uint8_t *out;
    size_t outlen;
    assert_true(mp3splice_pop(s, &out, &outlen));
    assert_int_equal(outlen, 417);
    assert_memory_equal(out, f, 417);
    assert_false(mp3splice_pop(s, &out, &outlen));
    mp3splice_free(s);
}

static void bad_data(void **state)
{
    (void)state;
    const struct fmt *const two[] = {&fm_44s, &fm_44s, &fm_44s};
    const struct fmt *const mpeg2[] = {&fm_22s, &fm_22s};
    int zero[] = {0, 0, 0};

    /* The first frame's data cannot start before the stream. */
    assert_int_equal(push_frames(two, (int[]){1}, (int[]){100}, 1, NULL), MP3SPLICE_EDATA);
    assert_int_equal(push_frames(two, (int[]){511}, (int[]){0}, 1, NULL), MP3SPLICE_EDATA);
    /* Nor before the segment: 381 payload bytes came before. */
    assert_int_equal(push_frames(two, (int[]){0, 381}, (int[]){0, 100}, 2, NULL), 0);
    assert_int_equal(push_frames(two, (int[]){0, 382}, (int[]){0, 100}, 2, NULL), MP3SPLICE_EDATA);
    assert_int_equal(push_frames(two, (int[]){0, 1}, (int[]){10, 100}, 2, (int[]){0, 1}),
                     MP3SPLICE_EDATA);
    assert_int_equal(push_frames(two, (int[]){0, 0, 1}, (int[]){10, 10, 10}, 3, (int[]){0, 0, 1}),
                     MP3SPLICE_EDATA);
    assert_int_equal(push_frames(two, (int[]){0, 0, 0}, (int[]){10, 10, 10}, 3, (int[]){1, 1, 1}),
                     0);
    /* The data must end in the frame's own payload. */
    assert_int_equal(push_frames(two, zero, (int[]){381}, 1, NULL), 0);
    assert_int_equal(push_frames(two, zero, (int[]){382}, 1, NULL), MP3SPLICE_EDATA);
    assert_int_equal(push_frames(two, (int[]){0, 100}, (int[]){10, 481}, 2, NULL), 0);
    assert_int_equal(push_frames(two, (int[]){0, 100}, (int[]){10, 482}, 2, NULL), MP3SPLICE_EDATA);
    /* MPEG-2 at 22.05 kHz, 80 kbit/s (index 9): payload 261 - 4 - 17. */
    assert_int_equal(push_frames(mpeg2, (int[]){0, 240}, (int[]){0, 480}, 2, NULL), 0);
    assert_int_equal(push_frames(mpeg2, (int[]){0, 240}, (int[]){0, 481}, 2, NULL),
                     MP3SPLICE_EDATA);
    assert_int_equal(push_frames(mpeg2, (int[]){0, 241}, (int[]){0, 10}, 2, NULL), MP3SPLICE_EDATA);
}

static void other_stream(void **state)
{
    (void)state;
    const struct fmt *const rate[] = {&fm_44s, &(struct fmt){1, 1, 2}};
    const struct fmt *const version[] = {&fm_44s, &fm_22s};
    const struct fmt *const v25[] = {&fm_22s, &(struct fmt){25, 0, 2}};
    const struct fmt *const mode[] = {&fm_44s, &(struct fmt){1, 0, 1}};
    const struct fmt *const mono[] = {&fm_24m, &(struct fmt){2, 1, 2}};
    int mdb[] = {0, 0};
    int len[] = {10, 10};
    int next[] = {0, 1};
    for (int join = 0; join < 2; join++) {
        const int *begin = join ? next : NULL;
        assert_int_equal(push_frames(rate, mdb, len, 2, begin), MP3SPLICE_ESTATE);
        assert_int_equal(push_frames(version, mdb, len, 2, begin), MP3SPLICE_ESTATE);
        assert_int_equal(push_frames(v25, mdb, len, 2, begin), MP3SPLICE_ESTATE);
        assert_int_equal(push_frames(mode, mdb, len, 2, begin), MP3SPLICE_ESTATE);
        assert_int_equal(push_frames(mono, mdb, len, 2, begin), MP3SPLICE_ESTATE);
    }
}

static void lifecycle(void **state)
{
    uint8_t f[MP3_FRAME_MAX];
    uint32_t rng = 9;
    const uint8_t *out;
    size_t len;
    (void)state;

    mp3splice_free(NULL);

    /* Nothing pushed. */
    struct mp3splice *s = mp3splice_new();
    assert_non_null(s);
    assert_false(mp3splice_pop(s, &out, &len));
    mp3splice_begin_segment(s);
    mp3splice_begin_segment(s);
    mp3splice_finish(s);
    assert_false(mp3splice_pop(s, &out, &len));
    assert_int_equal(mp3splice_raised(s), 0);
    int size = make_frame(f, &fm_44s, 9, 0, 0, 10, &rng);
    assert_int_equal(mp3splice_push(s, f, (size_t)size, true), MP3SPLICE_ESTATE);
    mp3splice_free(s);

    /* Only pre-roll. */
    s = mp3splice_new();
    assert_non_null(s);
    assert_int_equal(mp3splice_push(s, f, (size_t)size, false), 0);
    assert_int_equal(mp3splice_push(s, f, (size_t)size, false), 0);
    assert_false(mp3splice_pop(s, &out, &len));
    mp3splice_finish(s);
    assert_false(mp3splice_pop(s, &out, &len));
    mp3splice_finish(s);
    assert_false(mp3splice_pop(s, &out, &len));
    mp3splice_free(s);

    /* Push after finish, with a frame still held. */
    s = mp3splice_new();
    assert_non_null(s);
    assert_int_equal(mp3splice_push(s, f, (size_t)size, true), 0);
    mp3splice_finish(s);
    assert_int_equal(mp3splice_push(s, f, (size_t)size, true), MP3SPLICE_ESTATE);
    mp3splice_begin_segment(s);
    assert_int_equal(mp3splice_push(s, f, (size_t)size, true), MP3SPLICE_ESTATE);
    assert_true(mp3splice_pop(s, &out, &len));
    assert_int_equal(len, (size_t)size);
    assert_memory_equal(out, f, (size_t)size);
    assert_false(mp3splice_pop(s, &out, &len));
    mp3splice_free(s);

    /* Freed with frames held. */
    s = mp3splice_new();
    assert_non_null(s);
    for (int i = 0; i < 5; i++)
        assert_int_equal(mp3splice_push(s, f, (size_t)size, true), 0);
    mp3splice_free(s);
}

/* The pushed bytes are copied: changing them after the push changes
 * nothing. */
static void copies_input(void **state)
{
    struct plan pl;
    (void)state;
    plan_init(&pl);
    join_plan(&pl, &fm_44s, 9, 9, 100, 200, 300, 21);
    struct result *want = ref_splice(&pl);
    struct mp3splice *s = mp3splice_new();
    struct result *got = result_new();
    uint8_t tmp[MP3_FRAME_MAX];
    assert_non_null(s);
    for (int i = 0; i < pl.n; i++) {
        memcpy(tmp, pl.p[i].frame, (size_t)pl.p[i].len);
        if (pl.p[i].begin)
            mp3splice_begin_segment(s);
        assert_int_equal(mp3splice_push(s, tmp, (size_t)pl.p[i].len, pl.p[i].keep), 0);
        memset(tmp, 0xa5, sizeof tmp);
        drain(s, got);
    }
    mp3splice_finish(s);
    drain(s, got);
    mp3splice_free(s);
    assert_int_equal(want->err, 0);
    assert_int_equal(got->len, want->len);
    assert_memory_equal(got->out, want->out, want->len);
    result_free(want);
    result_free(got);
    plan_cleanup(&pl);
}

/* Random streams of every format against the reference. */
static void random_streams(void **state)
{
    uint32_t rng = 0x9e3779b9;
    int ok = 0, raised = 0, full_seen = 0, older = 0, refused = 0, slid = 0;
    (void)state;
    for (int iter = 0; iter < 3000; iter++) {
        /* Half the time a format where a frame older than the previous
         * one can be pending at a join, with the most to make up there. */
        static const struct fmt *const pending[] = {&fm_48m, &fm_48s, &fm_24m, &fm_24s};
        bool focus = iter % 4 >= 2;
        const struct fmt *fm = focus ? pending[rnd(&rng) % 4] : all_fmts[rnd(&rng) % NFMTS];
        struct plan pl;
        int nseg = 1 + (int)(rnd(&rng) % 4);
        bool vbr = focus || rnd(&rng) % 2, edges = focus || rnd(&rng) % 2;
        plan_init(&pl);
        for (int i = 0; i < nseg; i++) {
            int npre = (int)(rnd(&rng) % 4);
            int nkeep = 1 + (int)(rnd(&rng) % 12);
            int npost = rnd(&rng) % 2 ? 0 : 1 + (int)(rnd(&rng) % 2);
            random_segment(&pl, fm, &rng, npre, nkeep, npost, vbr, edges);
        }
        if (rnd(&rng) % 2)
            pl.p[0].begin = false;
        plan_extract(&pl, true);
        struct result *r = splice_checked(&pl, iter % 2 == 0);
        if (r->err == 0) {
            ok++;
            raised += r->raised > 0;
        } else {
            assert_int_equal(r->err, MP3SPLICE_EFULL);
            full_seen++;
        }
        older += r->steps_older > 0;
        refused += r->refused_mdb > 0;
        slid += r->slid > 0;
        result_free(r);
        plan_cleanup(&pl);
    }
    /* The mix exercised what it was meant to: joins made up by frames
     * older than the previous one, raises refused for main_data_begin,
     * joins moved on. */
    assert_true(ok > 1000);
    assert_true(raised > 500);
    assert_true(older > 10);
    assert_true(refused > 3);
    assert_true(slid > 50);
    assert_true(full_seen > 0);
}

/* ---- frames from LAME --------------------------------------------------- */

/* Adds the frames in an encoder packet to the plan. */
static void add_packet(struct plan *pl, const AVPacket *pkt, int *count, int preroll, bool *begin)
{
    size_t off = 0;
    while (off < (size_t)pkt->size) {
        struct rframe f;
        assert_true(rparse(pkt->data + off, (size_t)pkt->size - off, &f));
        assert_true(off + (size_t)f.size <= (size_t)pkt->size);
        assert_int_equal(f.crc, 0);
        struct push *u = plan_add(pl);
        memcpy(u->frame, pkt->data + off, (size_t)f.size);
        u->len = f.size;
        u->keep = *count >= preroll;
        u->begin = *begin;
        *begin = false;
        (*count)++;
        off += (size_t)f.size;
    }
}

static int drain_encoder(AVCodecContext *c, AVPacket *pkt, struct plan *pl, int *count, int preroll,
                         bool *begin)
{
    int rc;
    while ((rc = avcodec_receive_packet(c, pkt)) == 0) {
        add_packet(pl, pkt, count, preroll, begin);
        av_packet_unref(pkt);
    }
    return rc == AVERROR(EAGAIN) || rc == AVERROR_EOF ? 0 : rc;
}

/* Encodes pcm[from, to) (planar float, whole 1152-sample frames) with
 * libmp3lame as one segment whose first preroll frames are not kept.
 * false when libavcodec has no libmp3lame. */
static bool lame_segment(struct plan *pl, float *const pcm[2], int channels, int rate, int kbps,
                         int from, int to, int preroll)
{
    const AVCodec *codec = avcodec_find_encoder_by_name("libmp3lame");
    if (codec == NULL)
        return false;
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVFrame *fr = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    int count = 0;
    bool begin = true;
    assert_non_null(c);
    assert_non_null(fr);
    assert_non_null(pkt);
    c->sample_rate = rate;
    c->sample_fmt = AV_SAMPLE_FMT_FLTP;
    c->bit_rate = kbps * 1000;
    av_channel_layout_default(&c->ch_layout, channels);
    assert_int_equal(avcodec_open2(c, codec, NULL), 0);
    int fs = c->frame_size > 0 ? c->frame_size : 1152;
    for (int at = from; at < to; at += fs) {
        int n = to - at < fs ? to - at : fs;
        fr->nb_samples = n;
        fr->format = AV_SAMPLE_FMT_FLTP;
        fr->sample_rate = rate;
        assert_int_equal(av_channel_layout_copy(&fr->ch_layout, &c->ch_layout), 0);
        assert_int_equal(av_frame_get_buffer(fr, 0), 0);
        for (int ch = 0; ch < channels; ch++)
            memcpy(fr->data[ch], pcm[ch] + at, (size_t)n * sizeof(float));
        fr->pts = at - from;
        assert_int_equal(avcodec_send_frame(c, fr), 0);
        av_frame_unref(fr);
        assert_int_equal(drain_encoder(c, pkt, pl, &count, preroll, &begin), 0);
    }
    assert_int_equal(avcodec_send_frame(c, NULL), 0);
    assert_int_equal(drain_encoder(c, pkt, pl, &count, preroll, &begin), 0);
    av_packet_free(&pkt);
    av_frame_free(&fr);
    avcodec_free_context(&c);
    return true;
}

static int decode_errors;

static void count_errors(void *avcl, int level, const char *fmt, va_list vl)
{
    (void)avcl;
    (void)fmt;
    (void)vl;
    if (level <= AV_LOG_ERROR)
        decode_errors++;
}

/* Decodes the stream with libavcodec's MP3 decoder; returns the samples
 * per channel it gave and counts what it complained about. */
static long decode_all(const uint8_t *out, size_t len)
{
    const AVCodec *codec = avcodec_find_decoder(AV_CODEC_ID_MP3);
    AVCodecContext *c = avcodec_alloc_context3(codec);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    long samples = 0;
    assert_non_null(codec);
    assert_non_null(c);
    assert_non_null(pkt);
    assert_non_null(fr);
    assert_int_equal(avcodec_open2(c, codec, NULL), 0);
    for (size_t off = 0; off < len;) {
        struct rframe f;
        assert_true(rparse(out + off, len - off, &f));
        assert_int_equal(av_new_packet(pkt, f.size), 0);
        memcpy(pkt->data, out + off, (size_t)f.size);
        assert_int_equal(avcodec_send_packet(c, pkt), 0);
        av_packet_unref(pkt);
        while (avcodec_receive_frame(c, fr) == 0) {
            samples += fr->nb_samples;
            av_frame_unref(fr);
        }
        off += (size_t)f.size;
    }
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&c);
    return samples;
}

static void lame_join(int channels, int rate, int kbps, int frames, uint32_t seed)
{
    const int fs = rate >= 32000 ? 1152 : 576;
    const int total = frames * fs;
    const int cut = frames / 2 * fs;
    float *pcm[2] = {NULL, NULL};
    uint32_t rng = seed;
    struct plan pl;

    for (int ch = 0; ch < 2; ch++) {
        pcm[ch] = calloc((size_t)total, sizeof(float));
        assert_non_null(pcm[ch]);
    }
    /* Noise, loud and quiet in turns, so that the reservoir fills and
     * empties. */
    float amp = 0.5f;
    for (int i = 0; i < total; i++) {
        if (i % fs == 0 && rnd(&rng) % 3 == 0)
            amp = amp > 0.1f ? 0.002f : 0.7f;
        for (int ch = 0; ch < 2; ch++)
            pcm[ch][i] = amp * ((float)(rnd(&rng) % 20001) / 10000.0f - 1.0f);
    }

    plan_init(&pl);
    if (!lame_segment(&pl, pcm, channels, rate, kbps, 0, cut, 0)) {
        free(pcm[0]);
        free(pcm[1]);
        plan_cleanup(&pl);
        skip();
    }
    int a = pl.n;
    assert_true(lame_segment(&pl, pcm, channels, rate, kbps, cut - 3 * fs, total, 3));
    plan_extract(&pl, false);
    int reservoir = 0;
    for (int i = 0; i < pl.n; i++) {
        struct rframe f;
        assert_true(rparse(pl.p[i].frame, (size_t)pl.p[i].len, &f));
        reservoir += f.mdb > 0;
    }
    assert_true(reservoir > pl.n / 4);
    /* B's first kept frame reads data from its pre-roll. */
    struct rframe join;
    assert_true(rparse(pl.p[a + 3].frame, (size_t)pl.p[a + 3].len, &join));
    assert_true(join.mdb > 0);
    assert_false(pl.p[a].keep);
    assert_true(pl.p[a].begin);

    struct result *r = splice_checked(&pl, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->nout, pl.n - 3);

    /* The decoder finds every frame's data where it looks. */
    av_log_set_callback(count_errors);
    decode_errors = 0;
    long samples = decode_all(r->out, r->len);
    av_log_set_callback(av_log_default_callback);
    assert_int_equal(decode_errors, 0);
    assert_int_equal(samples, (long)r->nout * fs);
    result_free(r);
    plan_cleanup(&pl);
    free(pcm[0]);
    free(pcm[1]);
}

static void lame_frames(void **state)
{
    (void)state;
    lame_join(2, 44100, 128, 60, 1);
    lame_join(2, 44100, 64, 60, 2);
    lame_join(1, 48000, 96, 60, 3);
    lame_join(2, 22050, 64, 80, 4);
    lame_join(1, 16000, 24, 80, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_known),   cmocka_unit_test(header_refused),
        cmocka_unit_test(header_all),     cmocka_unit_test(frame_size),
        cmocka_unit_test(one_segment),    cmocka_unit_test(pops_in_order),
        cmocka_unit_test(two_segments),   cmocka_unit_test(raise_current),
        cmocka_unit_test(raise_previous), cmocka_unit_test(raise_older),
        cmocka_unit_test(raise_refused),  cmocka_unit_test(raise_older_mpeg2),
        cmocka_unit_test(join_slides),    cmocka_unit_test(no_spare_mid_segment),
        cmocka_unit_test(full),           cmocka_unit_test(bad_frames),
        cmocka_unit_test(bad_data),       cmocka_unit_test(other_stream),
        cmocka_unit_test(lifecycle),      cmocka_unit_test(copies_input),
        cmocka_unit_test(random_streams), cmocka_unit_test(lame_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
