/* libFuzzer: the MP3 splicer on hostile frame streams.
 *
 * Input: records of one control byte and one frame. Control bits: 0 keep,
 * 1 mp3splice_begin_segment first, 2 pop everything ready after the push,
 * 3 push one byte fewer than the header says (5 one more, when there is
 * one). The frame's length comes from its header; when the bytes after
 * the control byte are no layer III header, one byte is skipped. Checks
 * that every frame out is a whole CRC-less layer III frame of the stream's
 * format that a decoder can read (main_data_begin and the data's length
 * within the payloads out so far), and one frame out per kept push. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "converter/mp3splice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
    struct mp3_header first; /* the first frame out */
    long n;
    long payload; /* payload bytes out so far */
};

static unsigned get_bits(const uint8_t *p, int pos, int n)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        int at = pos + i;
        v = (v << 1) | ((p[at / 8] >> (7 - at % 8)) & 1u);
    }
    return v;
}

/* main_data_begin and the main data's length in bytes, from side info. */
static void side_info(const uint8_t *si, const struct mp3_header *h, int *mdb, int *len)
{
    int v1 = h->version == 1, ch = h->channels;
    int first = v1 ? 9 + (ch == 1 ? 5 : 3) + 4 * ch : 8 + (ch == 1 ? 1 : 2);
    int blocks = (v1 ? 2 : 1) * ch, bits = 0;
    for (int k = 0; k < blocks; k++)
        bits += (int)get_bits(si, first + (v1 ? 59 : 63) * k, 12);
    *mdb = (int)get_bits(si, 0, v1 ? 9 : 8);
    *len = (bits + 7) / 8;
}

static void check_frame(struct out *o, const uint8_t *f, size_t len)
{
    struct mp3_header h;
    if (f == NULL || len < 4 || len > MP3_FRAME_MAX)
        abort();
    if (mp3_header_parse(f, &h) != 0 || h.size != (int)len || h.crc)
        abort();
    if (o->n == 0)
        o->first = h;
    else if (h.version != o->first.version || h.sample_rate != o->first.sample_rate ||
             h.channels != o->first.channels)
        abort();
    int hs = 4 + h.side_size;
    if ((int)len < hs)
        abort();
    int cap = (int)len - hs, mdb, dlen;
    side_info(f + 4, &h, &mdb, &dlen);
    if (mdb > o->payload || dlen > mdb + cap)
        abort();
    o->payload += cap;
    o->n++;
}

static void drain(struct mp3splice *s, struct out *o)
{
    const uint8_t *f;
    size_t len;
    while (mp3splice_pop(s, &f, &len))
        check_frame(o, f, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mp3splice *s = mp3splice_new();
    struct out o = {.n = 0, .payload = 0};
    long kept = 0;
    int err = 0;
    size_t i = 0;

    if (s == NULL)
        return 0;
    while (i < size) {
        uint8_t ctl = data[i++];
        struct mp3_header h;
        if (size - i < 4 || mp3_header_parse(data + i, &h) != 0) {
            i++;
            continue;
        }
        if (h.size < 4 || h.size > MP3_FRAME_MAX)
            abort();
        size_t len = (size_t)h.size;
        if (ctl & 8)
            len--;
        else if ((ctl & 32) && len < size - i)
            len++;
        if (len > size - i)
            len = size - i;
        if (ctl & 2)
            mp3splice_begin_segment(s);
        int rc = mp3splice_push(s, data + i, len, ctl & 1);
        switch (rc) {
        case MP3SPLICE_OK:
            /* Once refused, always refused. */
            if (err != 0)
                abort();
            kept += ctl & 1;
            break;
        case MP3SPLICE_EFRAME:
        case MP3SPLICE_EDATA:
        case MP3SPLICE_EFULL:
        case MP3SPLICE_ESTATE:
        case MP3SPLICE_ENOMEM:
            if (err == 0)
                err = rc;
            break;
        default:
            abort();
        }
        if (ctl & 4)
            drain(s, &o);
        if (o.n > kept)
            abort();
        i += len;
    }
    mp3splice_finish(s);
    drain(s, &o);
    if (err == 0 && o.n != kept)
        abort();
    if (o.n > kept || mp3splice_raised(s) < 0)
        abort();
    mp3splice_free(s);
    return 0;
}
