/*
 * mp3enc: opens the libmp3lame encoder (through libavcodec) with a job's
 * settings. The single pass (transcode.c) and every segment's encoder
 * (segments.c) open theirs here, so they encode alike.
 */
#ifndef VID2MP3_MP3ENC_H
#define VID2MP3_MP3ENC_H

#include <libavcodec/avcodec.h>

struct mp3enc_settings {
    int quality; /* LAME VBR 0..9 (clamped), used when bitrate is 0 */
    int bitrate; /* kbit/s for constant bitrate (at most 320); 0 for VBR */
    enum AVSampleFormat sample_fmt;
    int sample_rate; /* an MP3 rate */
    int channels;    /* 1 or 2 */
};

/* The encoder's sample format closest to in: planar of the same kind when
 * it has one (no conversion), else float. */
enum AVSampleFormat mp3enc_pick_format(enum AVSampleFormat in);

/* An open encoder (the caller frees it with avcodec_free_context), or NULL
 * with *averr set (AVERROR_ENCODER_NOT_FOUND when libmp3lame is missing). */
AVCodecContext *mp3enc_open(const struct mp3enc_settings *st, int *averr);

#endif
