/* mp3splice: see mp3splice.h. */
#include "converter/mp3splice.h"

#include <stdlib.h>
#include <string.h>

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

struct out_frame {
    uint8_t buf[MP3_FRAME_MAX];
    struct mp3_header h;
    int64_t p;   /* where its payload starts in the output payload stream */
    bool raised; /* its bitrate index was raised (counted once) */
};

/* The current segment's payload stream: its last bytes (main_data_begin
 * reaches at most MDB_MAX_V1 back), then the frame being pushed. */
#define SRC_CAP (MDB_MAX_V1 + MP3_FRAME_MAX)

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
    int64_t out_end;  /* the output payload position after the last frame */
    int64_t data_end; /* the end of the last frame's data */
    long raised;
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
    free(s);
}

void mp3splice_begin_segment(struct mp3splice *s)
{
    s->src_len = 0;
    s->src_total = 0;
}

long mp3splice_raised(const struct mp3splice *s)
{
    return s->raised;
}

static struct out_frame *slot(struct mp3splice *s, int i)
{
    return &s->pend[(s->head + i) % s->pend_cap];
}

static int payload_cap(const struct out_frame *f)
{
    return f->h.size - 4 - f->h.side_size;
}

static uint8_t *payload(struct out_frame *f)
{
    return f->buf + 4 + f->h.side_size;
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

/* Raises f's bitrate index by one step: the frame grows, zeros at its end. */
static void raise_bitrate(struct mp3splice *s, struct out_frame *f)
{
    int idx = f->h.bitrate_index + 1;
    int size = mp3_frame_size(f->h.version, idx, f->h.sample_rate, f->h.padding);
    memset(f->buf + f->h.size, 0, (size_t)(size - f->h.size));
    f->buf[2] = (uint8_t)((f->buf[2] & 0x0F) | (idx << 4));
    f->h.bitrate_index = idx;
    f->h.bitrate = f->h.version == 1 ? kbps_v1[idx] : kbps_v2[idx];
    f->h.size = size;
    if (!f->raised)
        s->raised++;
    f->raised = true;
}

/* Copies data into the output stream at position pos, across the pending
 * frames' payloads (the caller made sure they hold it). */
static void lay(struct mp3splice *s, int64_t pos, const uint8_t *data, int len)
{
    for (int i = 0; i < s->count && len > 0; i++) {
        struct out_frame *f = slot(s, i);
        int64_t end = f->p + payload_cap(f);
        if (pos >= end)
            continue;
        int off = (int)(pos - f->p), n = (int)(end - pos) < len ? (int)(end - pos) : len;
        memcpy(payload(f) + off, data, (size_t)n);
        data += n;
        pos += n;
        len -= n;
    }
}

/* Frames no later data can reach become ready; the newest never does
 * before the end (the next frame may raise its bitrate). */
static void mark_ready(struct mp3splice *s)
{
    while (s->ready < s->count - 1) {
        struct out_frame *f = slot(s, s->ready);
        int64_t end = f->p + payload_cap(f);
        if (s->data_end < end && s->out_end - s->mdb_max < end)
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

/* Places the kept frame (header h, side info side) whose data is
 * data[0..len) and whose encoder put it mdb bytes before its payload. */
static int place(struct mp3splice *s, const uint8_t *frame, const struct mp3_header *h, int mdb,
                 const uint8_t *data, int len)
{
    int rc = reserve(s);
    if (rc != 0)
        return rc;
    struct out_frame *f = slot(s, s->count);
    memset(f->buf, 0, sizeof(f->buf));
    memcpy(f->buf, frame, (size_t)(4 + h->side_size));
    f->h = *h;
    f->p = s->out_end;
    f->raised = false;
    struct out_frame *prev = s->count > s->ready ? slot(s, s->count - 1) : NULL;
    for (;;) {
        int64_t start = f->p - mdb > s->data_end ? f->p - mdb : s->data_end;
        if (start + len <= f->p + payload_cap(f)) {
            set_mdb(h, f->buf + 4, (int)(f->p - start));
            s->count++;
            lay(s, start, data, len);
            s->data_end = start + len;
            s->out_end = f->p + payload_cap(f);
            return 0;
        }
        if (f->h.bitrate_index < BITRATE_INDEX_MAX) {
            raise_bitrate(s, f);
        } else if (prev != NULL && prev->h.bitrate_index < BITRATE_INDEX_MAX) {
            int before = payload_cap(prev);
            raise_bitrate(s, prev);
            f->p += payload_cap(prev) - before;
        } else {
            return MP3SPLICE_EFULL;
        }
    }
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
    int cap = h.size - 4 - h.side_size;
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
    if (!keep)
        return 0;
    rc = place(s, frame, &h, mdb, s->src + at, n);
    if (rc != 0)
        return s->error = rc;
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
    *frame = f->buf;
    *len = (size_t)f->h.size;
    s->head = (s->head + 1) % s->pend_cap;
    s->count--;
    s->ready--;
    return true;
}
