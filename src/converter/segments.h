/*
 * segments: one job's MP3 encoded on several threads (issue 10).
 *
 * The caller writes the PCM in order, in the encoder's format. It is cut
 * into segments of segment_frames × 1152 samples; each is encoded by its
 * own libmp3lame encoder (mp3enc.h) on one of `threads` threads, starting
 * early (pre-roll: segments_preroll_frames) and running SEGMENT_ROLL_FRAMES
 * × 1152 samples past its end (post-roll). Each segment keeps the frames
 * of its own span (1152 samples each, 576 at rates up to 24 kHz); they are
 * spliced in order with the bit reservoir kept (mp3splice.h) and handed
 * to the sink, on the caller's thread, with timestamps of the whole
 * stream. A listener cannot tell the result from one encoder's.
 *
 * Memory: the PCM of at most threads + 3 segments at once, whatever the
 * length of the input: 1.8 MB each for a default VBR segment at 48 kHz
 * stereo, 8 times the pre-roll for CBR (3.5 MB at 32 kbit/s).
 *
 * segments_write and segments_finish block while the threads are behind,
 * and call the sink themselves (on the caller's thread, in order).
 */
#ifndef VID2MP3_SEGMENTS_H
#define VID2MP3_SEGMENTS_H

#include "converter/mp3enc.h"

#include <libavcodec/packet.h>
#include <stdatomic.h>
#include <stdint.h>

#define SEGMENT_FRAMES_DEFAULT 192 /* 5 s at 44.1 kHz */
#define SEGMENT_FRAMES_MIN 8
#define SEGMENT_FRAMES_MAX 65536
#define SEGMENT_ROLL_FRAMES 2 /* one is not enough (the join's SNR drops) */
#define SEGMENT_ROLL_MAX_FRAMES 64

enum {
    SEGMENTS_EENCODER = -101, /* an encoder failed or gave fewer frames than its span */
    SEGMENTS_ESPLICE = -102,  /* the frames could not be spliced (mp3splice.h) */
    SEGMENTS_ENOMEM = -103,
    SEGMENTS_ECANCELED = -104,
};

/* Receives each finished frame as a packet (timestamps in 1/sample_rate);
 * it must unreference the packet. Returns 0, or a negative number that
 * stops the encoding and is returned by segments_write/segments_finish. */
typedef int (*segments_sink)(void *cls, AVPacket *pkt);

struct segments_config {
    struct mp3enc_settings enc; /* planar formats only (all libmp3lame takes) */
    int threads;                /* at least 1 */
    /* × 1152 samples per segment; 0: SEGMENT_FRAMES_DEFAULT, or 8 times the
     * pre-roll when that is longer; raised to SEGMENT_FRAMES_MIN */
    int segment_frames;
    segments_sink sink;
    void *sink_cls;
    const atomic_int *cancel; /* non-zero: stop with SEGMENTS_ECANCELED; may be NULL */
};

struct segments;

/* The pre-roll, in 1152-sample units, a segment encoded with st needs so
 * that its first kept frame is encoded as one encoder would: VBR, 2 (the
 * psychoacoustic model settles; one is not enough). CBR, enough more for a
 * new LAME encoder to fill its bit reservoir (it holds back a tenth of each
 * frame's bits until it is 90% full): 7 at 320 kbit/s, 14 at 128, 47 at
 * 32 (44.1 kHz). A segment's pre-roll is at most its span. */
int segments_preroll_frames(const struct mp3enc_settings *st);

/* Starts the threads; NULL when out of memory or threads, or when c is
 * not usable (a rate of 0, more than 2 channels, a packed format). */
struct segments *segments_new(const struct segments_config *c);

/* Takes nb_samples samples per channel (data: one pointer per plane).
 * Returns 0 or a negative code; after an error every call fails. */
int segments_write(struct segments *s, const uint8_t *const *data, int nb_samples);

/* Encodes what is left and hands every remaining frame to the sink. */
int segments_finish(struct segments *s);

/* CPU seconds the encoder threads spent on the segments they finished.
 * Thread-safe. */
double segments_cpu_seconds(struct segments *s);

int segments_count(const struct segments *s);   /* segments handed to the threads */
long segments_raised(const struct segments *s); /* frames whose bitrate the splice raised */

/* Stops the threads (an unfinished encoding is abandoned) and frees. */
void segments_free(struct segments *s);

#endif
