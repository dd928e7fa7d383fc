/* mp3splice: see mp3splice.h. */
#include "converter/mp3splice.h"

#include <stdlib.h>
#include <string.h>

/* The longest main data: 4 granule-channels of 4095 bits. */
#define MAIN_DATA_MAX 2048
/* How far back main_data_begin can point: 9 bits in MPEG-1, 8 in MPEG-2. */
#define MDB_MAX_V1 511
#define MDB_MAX_V2 255
#define BITRATE_INDEX_MAX 14

static const int kbps_v1[15] = {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320};
static const int kbps_v2[15] = {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160};
static const int rates_v1[3] = {44100, 48000, 32000};

int mp3_frame_size(int version, int bitrate_index, int sample_rate, int padding)
{
    if (bitrate_index < 1 || bitrate_index > BITRATE_INDEX_MAX)
        return 0;
    int div = version == 1 ? 1 : version == 2 ? 2 : version == 25 ? 4 : 0;
    if (div == 0 || (sample_rate * div != rates_v1[0] && sample_rate * div != rates_v1[1] &&
                     sample_rate * div != rates_v1[2]))
        return 0;
    if (version == 1)
        return 144000 * kbps_v1[bitrate_index] / sample_rate + (padding != 0);
    if (version == 2 || version == 25)
        return 72000 * kbps_v2[bitrate_index] / sample_rate + (padding != 0);
    return 0;
}

int mp3_header_parse(const uint8_t *p, struct mp3_header *h)
{
    if (p[0] != 0xFF || (p[1] & 0xE0) != 0xE0)
        return MP3SPLICE_EFRAME;
    int ver_bits = (p[1] >> 3) & 3, layer = (p[1] >> 1) & 3;
    int bri = p[2] >> 4, sri = (p[2] >> 2) & 3;
    if (ver_bits == 1 || layer != 1 || bri == 0 || bri == 15 || sri == 3)
        return MP3SPLICE_EFRAME;
    memset(h, 0, sizeof(*h));
    h->version = ver_bits == 3 ? 1 : ver_bits == 2 ? 2 : 25;
    h->bitrate_index = bri;
    h->bitrate = h->version == 1 ? kbps_v1[bri] : kbps_v2[bri];
    h->sample_rate = rates_v1[sri] / (h->version == 1 ? 1 : h->version == 2 ? 2 : 4);
    h->padding = (p[2] >> 1) & 1;
    h->channels = (p[3] >> 6) == 3 ? 1 : 2;
    h->crc = (p[1] & 1) == 0;
    h->size = mp3_frame_size(h->version, bri, h->sample_rate, h->padding);
    if (h->version == 1)
        h->side_size = h->channels == 1 ? 17 : 32;
    else
        h->side_size = h->channels == 1 ? 9 : 17;
    return 0;
}

/* ---- side info -------------------------------------------------------- */

static unsigned bits_at(const uint8_t *p, int pos, int n)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++, pos++)
        v = (v << 1) | ((p[pos >> 3] >> (7 - (pos & 7))) & 1u);
    return v;
}

static int mdb_of(const struct mp3_header *h, const uint8_t *side)
{
    return (int)bits_at(side, 0, h->version == 1 ? 9 : 8);
}

static void set_mdb(const struct mp3_header *h, uint8_t *side, int mdb)
{
    if (h->version == 1) {
        side[0] = (uint8_t)(mdb >> 1);
        side[1] = (uint8_t)((side[1] & 0x7F) | ((mdb & 1) << 7));
    } else {
        side[0] = (uint8_t)mdb;
    }
}

/* The frame's main data in bytes: its part2_3_lengths, rounded up. */
static int data_bytes(const struct mp3_header *h, const uint8_t *side)
{
    int granules, start, block;
    if (h->version == 1) {
        granules = 2;
        start = 9 + (h->channels == 1 ? 5 : 3) + 4 * h->channels;
        block = 59;
    } else {
        granules = 1;
        start = 8 + (h->channels == 1 ? 1 : 2);
        block = 63;
    }
    int bits = 0;
    for (int i = 0; i < granules * h->channels; i++)
        bits += (int)bits_at(side, start + i * block, 12);
    return (bits + 7) / 8;
}

/* ---- the splicer ------------------------------------------------------ */

/* A kept frame not popped yet: its header and side info, and where its
 * payload and its data sit in the output payload stream. */
struct out_frame {
    uint8_t hs[4 + 32]; /* header and side info; main_data_begin set at pop */
    struct mp3_header h;
    int64_t p;   /* its payload's start */
    int64_t s;   /* its data's start (p - s is its main_data_begin) */
    bool raised; /* its bitrate index was raised (counted once) */
};

/* The current segment's payload stream: its last bytes (main_data_begin
 * reaches at most MDB_MAX_V1 back), then the frame being pushed. */
#define SRC_CAP (MDB_MAX_V1 + MP3_FRAME_MAX)

/* The first frame a segment encoded past its span (its post-roll): at a
 * join the splice cannot make, it stands in for the next segment's first
 * kept frame, which covers the same samples. */
struct spare {
    bool have;
    uint8_t hs[4 + 32];
    struct mp3_header h;
    int mdb;
    int len;
    uint8_t data[MAIN_DATA_MAX];
};

struct mp3splice {
    int error; /* sticky */
    bool finished;
    bool have_stream;
    struct mp3_header first; /* version, rate and channels every frame must share */
    int mdb_max;

    uint8_t src[SRC_CAP];
    int src_len;       /* bytes in src */
    int64_t src_total; /* payload bytes of the segment so far */

    /* kept frames not popped yet, a ring; the first `ready` can be popped */
    struct out_frame *pend;
    int pend_cap, head, count, ready;
    /* the output payload stream from the first pending frame's payload:
     * ob[0] is position ob_base; it ends at out_end */
    uint8_t *ob;
    size_t ob_cap;
    int64_t ob_base;
    int64_t out_end;  /* the position after the last frame's payload */
    int64_t data_end; /* the end of the last frame's data */
    uint8_t popped[MP3_FRAME_MAX];
    long raised, slid;

    int seg_kept; /* frames kept from the current segment */
    struct spare spare;
};

struct mp3splice *mp3splice_new(void)
{
    return calloc(1, sizeof(struct mp3splice));
}

void mp3splice_free(struct mp3splice *s)
{
    if (s == NULL)
        return;
    free(s->pend);
    free(s->ob);
    free(s);
}

void mp3splice_begin_segment(struct mp3splice *s)
{
    s->src_len = 0;
    s->src_total = 0;
    s->seg_kept = 0;
}

long mp3splice_raised(const struct mp3splice *s)
{
    return s->raised;
}

long mp3splice_slid(const struct mp3splice *s)
{
    return s->slid;
}

static struct out_frame *slot(struct mp3splice *s, int i)
{
    return &s->pend[(s->head + i) % s->pend_cap];
}

static int payload_cap(const struct mp3_header *h)
{
    return h->size - 4 - h->side_size;
}

/* Room for one more pending frame. */
static int reserve(struct mp3splice *s)
{
    if (s->count < s->pend_cap)
        return 0;
    int n = s->pend_cap > 0 ? 2 * s->pend_cap : 16;
    struct out_frame *p = malloc((size_t)n * sizeof(*p));
    if (p == NULL)
        return MP3SPLICE_ENOMEM;
    for (int i = 0; i < s->count; i++)
        p[i] = *slot(s, i);
    free(s->pend);
    s->pend = p;
    s->pend_cap = n;
    s->head = 0;
    return 0;
}

/* Makes the output stream reach end, zeros added. */
static int extend(struct mp3splice *s, int64_t end)
{
    size_t need = (size_t)(end - s->ob_base), have = (size_t)(s->out_end - s->ob_base);
    if (need <= have)
        return 0;
    if (need > s->ob_cap) {
        size_t n = s->ob_cap > 0 ? s->ob_cap : 4096;
        while (n < need)
            n *= 2;
        uint8_t *b = realloc(s->ob, n);
        if (b == NULL)
            return MP3SPLICE_ENOMEM;
        s->ob = b;
        s->ob_cap = n;
    }
    memset(s->ob + have, 0, need - have);
    s->out_end = end;
    return 0;
}

/* Raises pending frame i's bitrate index by one step, while the newest
 * pending frame is being placed. Its payload grows at its end: the frames
 * after it start that much later while their data stay where they are
 * (their main_data_begin grows), and the stream gets as many zeros at its
 * end. Returns the growth, or 0 when it cannot: the top index, or a later
 * placed frame's main_data_begin would pass the limit. */
static int raise_frame(struct mp3splice *s, int i)
{
    struct out_frame *f = slot(s, i);
    int idx = f->h.bitrate_index + 1;
    if (idx > BITRATE_INDEX_MAX)
        return 0;
    int size = mp3_frame_size(f->h.version, idx, f->h.sample_rate, f->h.padding);
    int grow = size - f->h.size;
    for (int j = i + 1; j < s->count - 1; j++) {
        const struct out_frame *g = slot(s, j);
        if (g->p + grow - g->s > s->mdb_max)
            return 0;
    }
    if (extend(s, s->out_end + grow) != 0)
        return 0;
    for (int j = i + 1; j < s->count; j++)
        slot(s, j)->p += grow;
    f->hs[2] = (uint8_t)((f->hs[2] & 0x0F) | (idx << 4));
    f->h.bitrate_index = idx;
    f->h.bitrate = f->h.version == 1 ? kbps_v1[idx] : kbps_v2[idx];
    f->h.size = size;
    if (!f->raised)
        s->raised++;
    f->raised = true;
    return grow;
}

/* Frames that no later frame's data can reach (main_data_begin points at
 * most mdb_max back) become ready. Until then a frame may still grow to
 * make room at a join (raise_frame). */
static void mark_ready(struct mp3splice *s)
{
    while (s->ready < s->count - 1) {
        const struct out_frame *f = slot(s, s->ready);
        if (s->out_end - s->mdb_max < f->p + payload_cap(&f->h))
            break;
        s->ready++;
    }
}

/* Checks the frame against the stream and reads its header. */
static int check_frame(struct mp3splice *s, const uint8_t *frame, size_t len, struct mp3_header *h)
{
    if (len < 4 || mp3_header_parse(frame, h) != 0 || h->crc || (size_t)h->size != len ||
        h->size < 4 + h->side_size)
        return MP3SPLICE_EFRAME;
    if (!s->have_stream) {
        s->first = *h;
        s->have_stream = true;
        s->mdb_max = h->version == 1 ? MDB_MAX_V1 : MDB_MAX_V2;
    } else if (h->version != s->first.version || h->sample_rate != s->first.sample_rate ||
               h->channels != s->first.channels) {
        return MP3SPLICE_ESTATE;
    }
    return 0;
}

/* Not placed: its data would start later than its encoder had it. */
#define ESHIFT 1

/* Raises the newest pending frame before the one being placed that can
 * grow; its growth, or 0. */
static int raise_earlier(struct mp3splice *s)
{
    int grew = 0;
    for (int i = s->count - 2; i >= s->ready && grew == 0; i--)
        grew = raise_frame(s, i);
    return grew;
}

/* Places the kept frame (header h) whose data is data[0..len) and whose
 * encoder put it mdb bytes before its payload: where its encoder had it.
 * When the previous frame's data end after that point (at a join), an
 * earlier frame grows until they do not (the frame starts later); if none
 * can, the data start later than the encoder had them (allow_shift; else
 * ESHIFT), which the next frames inherit until stuffing absorbs it. When
 * the data then do not fit, a frame grows: this one, else the newest
 * earlier one that can; else MP3SPLICE_EFULL. Not placed, the stream is
 * as before but for frames that grew. */
static int place(struct mp3splice *s, const uint8_t *frame, const struct mp3_header *h, int mdb,
                 const uint8_t *data, int len, bool allow_shift)
{
    int rc = reserve(s);
    if (rc != 0)
        return rc;
    if (s->count == 0)
        s->ob_base = s->out_end; /* nothing pending: the stream restarts here */
    struct out_frame *f = slot(s, s->count);
    memcpy(f->hs, frame, (size_t)(4 + h->side_size));
    f->h = *h;
    f->p = s->out_end;
    f->raised = false;
    if ((rc = extend(s, f->p + payload_cap(h))) != 0)
        return rc;
    s->count++; /* f is the newest pending frame from here on */
    for (;;) {
        int64_t start = f->p - mdb > s->data_end ? f->p - mdb : s->data_end;
        if (start > f->p - mdb) {
            if (raise_earlier(s) > 0)
                continue;
            if (!allow_shift) {
                s->count--;
                s->out_end = f->p;
                if (f->raised)
                    s->raised--;
                return ESHIFT;
            }
        }
        if (start + len <= f->p + payload_cap(&f->h)) {
            f->s = start;
            memcpy(s->ob + (start - s->ob_base), data, (size_t)len);
            s->data_end = start + len;
            return 0;
        }
        int grew = 0;
        for (int i = s->count - 1; i >= s->ready && grew == 0; i--)
            grew = raise_frame(s, i);
        if (grew == 0) {
            /* not placed: the stream ends where it would have begun
             * (earlier frames may have grown: that stays) */
            s->count--;
            s->out_end = f->p;
            if (f->raised)
                s->raised--; /* it does not come out */
            return MP3SPLICE_EFULL;
        }
    }
}

/* What a join attempt that does not work out must give back: the frames
 * it grew (only pending ones, which are not ready) and the stream's end
 * (growing only appends zeros to it). */
struct undo {
    struct out_frame *frames; /* slots ready..count-1, in order */
    int n;
    int64_t out_end;
    long raised;
};

static int undo_save(struct mp3splice *s, struct undo *u)
{
    u->n = s->count - s->ready;
    u->out_end = s->out_end;
    u->raised = s->raised;
    u->frames = u->n > 0 ? malloc((size_t)u->n * sizeof(*u->frames)) : NULL;
    if (u->n > 0 && u->frames == NULL)
        return MP3SPLICE_ENOMEM;
    for (int i = 0; i < u->n; i++)
        u->frames[i] = *slot(s, s->ready + i);
    return 0;
}

static void undo_restore(struct mp3splice *s, const struct undo *u)
{
    for (int i = 0; i < u->n; i++)
        *slot(s, s->ready + i) = u->frames[i];
    s->out_end = u->out_end;
    s->raised = u->raised;
}

/* A segment's first kept frame: where its encoder had it, earlier frames
 * grown as they must; else the previous segment's frame for the same
 * samples where its encoder had it (the join moves one frame on), with
 * nothing grown for the first try; else this one, later. */
static int place_join(struct mp3splice *s, const uint8_t *frame, const struct mp3_header *h,
                      int mdb, const uint8_t *data, int len)
{
    struct undo u;
    int rc = undo_save(s, &u);
    if (rc != 0)
        return rc;
    rc = place(s, frame, h, mdb, data, len, false);
    if (rc == ESHIFT) {
        undo_restore(s, &u);
        const struct spare *p = &s->spare;
        rc = place(s, p->hs, &p->h, p->mdb, p->data, p->len, false);
        if (rc == 0)
            s->slid++;
        else if (rc == ESHIFT)
            undo_restore(s, &u);
    }
    free(u.frames);
    return rc;
}

int mp3splice_push(struct mp3splice *s, const uint8_t *frame, size_t len, bool keep)
{
    if (s->error != 0)
        return s->error;
    if (s->finished)
        return s->error = MP3SPLICE_ESTATE;
    struct mp3_header h;
    int rc = check_frame(s, frame, len, &h);
    if (rc != 0)
        return s->error = rc;
    const uint8_t *side = frame + 4;
    int mdb = mdb_of(&h, side), n = data_bytes(&h, side);
    int cap = payload_cap(&h);
    if (mdb > s->src_total || n > mdb + cap)
        return s->error = MP3SPLICE_EDATA;
    /* keep the last mdb_max bytes, then append this payload */
    if (s->src_len > s->mdb_max) {
        memmove(s->src, s->src + s->src_len - s->mdb_max, (size_t)s->mdb_max);
        s->src_len = s->mdb_max;
    }
    memcpy(s->src + s->src_len, frame + 4 + h.side_size, (size_t)cap);
    int at = s->src_len - mdb; /* mdb <= src_total and mdb <= mdb_max: inside src */
    s->src_len += cap;
    s->src_total += cap;
    if (!keep) {
        if (s->seg_kept > 0 && !s->spare.have) {
            s->spare.have = true;
            memcpy(s->spare.hs, frame, (size_t)(4 + h.side_size));
            s->spare.h = h;
            s->spare.mdb = mdb;
            s->spare.len = n;
            memcpy(s->spare.data, s->src + at, (size_t)n);
        }
        return 0;
    }
    rc = ESHIFT;
    if (s->seg_kept == 0 && s->spare.have)
        rc = place_join(s, frame, &h, mdb, s->src + at, n);
    if (rc == ESHIFT)
        rc = place(s, frame, &h, mdb, s->src + at, n, true);
    if (rc != 0)
        return s->error = rc;
    s->seg_kept++;
    s->spare.have = false; /* a spare follows its segment's last kept frame */
    mark_ready(s);
    return 0;
}

void mp3splice_finish(struct mp3splice *s)
{
    s->finished = true;
    s->ready = s->count;
}

bool mp3splice_pop(struct mp3splice *s, const uint8_t **frame, size_t *len)
{
    if (s->ready == 0)
        return false;
    struct out_frame *f = slot(s, 0);
    int hs = 4 + f->h.side_size, cap = payload_cap(&f->h);
    memcpy(s->popped, f->hs, (size_t)hs);
    set_mdb(&f->h, s->popped + 4, (int)(f->p - f->s));
    memcpy(s->popped + hs, s->ob + (f->p - s->ob_base), (size_t)cap);
    *frame = s->popped;
    *len = (size_t)f->h.size;
    /* the stream before the next frame's payload is no longer needed */
    int64_t next = f->p + cap;
    size_t drop = (size_t)(next - s->ob_base);
    memmove(s->ob, s->ob + drop, (size_t)(s->out_end - next));
    s->ob_base = next;
    s->head = (s->head + 1) % s->pend_cap;
    s->count--;
    s->ready--;
    return true;
}
