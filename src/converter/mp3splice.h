/*
 * mp3splice: joins MPEG audio layer III frame streams that separate
 * encoders made, keeping the bit reservoir (issue 10, docs/architecture.md).
 *
 * A layer III frame's audio data ("main data") need not sit in its own
 * frame: main_data_begin in the side info says how many bytes before the
 * frame's payload it starts, in the payload of earlier frames (the bit
 * reservoir). Segments encoded apart cannot simply be concatenated: the
 * first frame kept from a segment points into bytes of frames that were
 * dropped (its pre-roll) or that belong to the previous segment.
 *
 * The splicer treats the frames' payloads as one byte stream. Each pushed
 * frame's main data is read from its own segment's stream (so every frame
 * of a segment is pushed, the pre-roll ones with keep = false), and each
 * kept frame's data is laid into the output stream where its encoder had
 * it (main_data_begin bytes before its payload). Within a segment that
 * always works, and the output is byte for byte the input (stuffing
 * bytes zeroed). At a join the previous segment's data may end after that
 * point. Then, in this order:
 * - an earlier frame not yet out (later data can still reach it) grows: its
 *   bitrate index is raised (a bigger frame, the same audio), the frames
 *   after it start later, their main_data_begin grows (within its limit),
 *   until the frame's data can start where its encoder had them;
 * - else, for a segment's first kept frame, the join moves one frame on:
 *   the previous segment's first frame after its last kept one (its first
 *   post-roll frame, which covers the same samples) is laid where its
 *   encoder had it, in place of this one, and the segment's next frames
 *   follow;
 * - else the data start later, after the previous frame's, and zero
 *   stuffing fills the gap before (ancillary data to a decoder); the next
 *   frames inherit the shift until a gap absorbs it.
 * When a frame's data then run past its frame's end, this frame grows, or
 * else the newest earlier frame that can; when none can, the push fails
 * with MP3SPLICE_EFULL. Headers and side info are unchanged except
 * main_data_begin and raised bitrate indexes.
 *
 * Frames with a CRC, free-format frames and layers I and II are refused.
 * Kept frames come out in push order, one for one (a slid join puts the
 * stand-in where the frame it replaces would be); a frame comes out once
 * no later frame's data can reach into it (main_data_begin's limit past
 * its end) or at mp3splice_finish.
 *
 * Ownership: the splicer copies what is pushed; a popped frame's bytes
 * belong to the splicer and stay valid until the next call on it.
 * Not thread-safe: one splicer per output stream.
 */
#ifndef VID2MP3_MP3SPLICE_H
#define VID2MP3_MP3SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest layer III frame: 320 kbit/s at 32 kHz, or 160 kbit/s at
 * 8 kHz, with the padding byte. */
#define MP3_FRAME_MAX 1441

enum {
    MP3SPLICE_OK = 0,
    MP3SPLICE_EFRAME = -1, /* not a whole layer III frame (header, size, CRC, free format) */
    MP3SPLICE_EDATA = -2,  /* main_data_begin or the data's length do not fit its segment */
    MP3SPLICE_EFULL = -3,  /* the data cannot be made to fit, even at the top bitrate */
    MP3SPLICE_ESTATE = -4, /* a different stream (version, rate, mode), or push after finish */
    MP3SPLICE_ENOMEM = -5,
};

/* A frame header's fields (for the splicer and the tests). */
struct mp3_header {
    int version;       /* 1: MPEG-1, 2: MPEG-2, 25: MPEG-2.5 */
    int bitrate_index; /* 1..14 */
    int bitrate;       /* kbit/s */
    int sample_rate;   /* Hz */
    int padding;       /* 0 or 1 */
    int channels;      /* 1 or 2 */
    int crc;           /* 1 when a 16-bit CRC follows the header */
    int size;          /* the whole frame, bytes */
    int side_size;     /* side info, bytes */
};

/* Parses the 4 bytes at p as a layer III frame header; 0 or
 * MP3SPLICE_EFRAME (free format and reserved values are refused). */
int mp3_header_parse(const uint8_t *p, struct mp3_header *h);

/* The size in bytes of a layer III frame of that version, bitrate index,
 * rate and padding; 0 when they make no frame. */
int mp3_frame_size(int version, int bitrate_index, int sample_rate, int padding);

struct mp3splice;

struct mp3splice *mp3splice_new(void);
void mp3splice_free(struct mp3splice *s);

/* The frames pushed next come from a new encoder: their main_data_begin
 * counts only within them. The first push also begins a segment. */
void mp3splice_begin_segment(struct mp3splice *s);

/* Pushes one whole frame (len bytes, exactly its header's size) of the
 * current segment. keep = false: it only carries data for later frames
 * (pre-roll) and never comes out. A frame must not be pushed after
 * mp3splice_finish. On an error nothing of the frame is kept, and the
 * splicer refuses every later push. */
int mp3splice_push(struct mp3splice *s, const uint8_t *frame, size_t len, bool keep);

/* Ends the stream: every frame still held can be popped. */
void mp3splice_finish(struct mp3splice *s);

/* The next finished frame: true with *frame and *len set, false when none
 * is ready yet (or, after finish, none is left). */
bool mp3splice_pop(struct mp3splice *s, const uint8_t **frame, size_t *len);

/* Frames whose bitrate index was raised so far. */
long mp3splice_raised(const struct mp3splice *s);

/* Joins moved one frame on so far. */
long mp3splice_slid(const struct mp3splice *s);

#endif
