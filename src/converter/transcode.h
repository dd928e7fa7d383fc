/*
 * transcode: one media file in, one MP3 out, in process with libavformat,
 * libavcodec (libmp3lame), libswresample (DESIGN §6).
 *
 * The input is read only through the caller's read/seek callbacks (a
 * custom AVIOContext: no protocol, no URL, no file is ever opened by
 * libavformat, and playlist/script demuxers are refused). Only the chosen
 * audio stream is decoded (the default one when there are several);
 * video is decoded for one frame at most, for the cover (cover.h). The
 * output is resampled to an MP3-legal rate (the source's when MP3 allows
 * it, else the nearest lower legal rate: 96 kHz -> 48 kHz), at most
 * stereo (5.1/7.1 downmixed), LAME VBR quality 2 by default. When the
 * source audio is already MP3 its packets are copied, not re-encoded.
 * The MP3 has a Xing/LAME header (the muxer writes it into a seekable
 * spill buffer: memory up to a bound, then an unlinked temporary file)
 * and ID3v2 tags: title (the source's, else the file name without its
 * extension), artist, album and date when the source has them, and the
 * cover picture when there is one. The finished MP3 is handed to the
 * output callback in order; nothing reaches the output on failure.
 *
 * Damage: up to 100 undecodable packets are skipped; a file cut short
 * converts as far as it can be read when its index survived (a faststart
 * MP4, a Matroska file), and fails with TRANSCODE_EMEDIA when it did not
 * (an MP4 with its index at the end).
 */
#ifndef VID2MP3_TRANSCODE_H
#define VID2MP3_TRANSCODE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seek callback's whence for "return the total size" (like AVSEEK_SIZE). */
#define TRANSCODE_SEEK_SIZE 0x10000

struct transcode_input {
    /* Reads up to len bytes: returns how many (0 at the end), or a
     * negative number on an error of the source (storage down...). */
    long (*read)(void *cls, void *buf, size_t len);
    /* whence SEEK_SET, SEEK_CUR, SEEK_END or TRANSCODE_SEEK_SIZE: returns
     * the new offset (or the size), or a negative number on an error.
     * A failing seek fails the transcode with TRANSCODE_EIO; seeks past
     * the end that a damaged file asks for are refused before they get
     * here, when the size is known. */
    int64_t (*seek)(void *cls, int64_t offset, int whence);
    void *cls;
    const char *filename; /* the original file name, for the title; may be NULL */
};

struct transcode_output {
    /* Receives the finished MP3 in order, in pieces; returns 0, or
     * non-zero to fail the transcode (TRANSCODE_EIO). */
    int (*write)(void *cls, const void *data, size_t len);
    void *cls;
};

struct transcode_options {
    int quality;              /* LAME VBR 0 (best) .. 9 (clamped), used when bitrate is 0
                                 (default 2) */
    int bitrate;              /* kbit/s, constant bitrate (LAME takes the nearest legal one,
                                 at most 320); 0 for VBR */
    double cpu_seconds_max;   /* CPU time of the calling thread and its encoder threads
                                 (counted per finished segment); 0: no limit */
    int64_t output_bytes_max; /* 0: no limit */
    const char *tmp_dir;      /* for the spill file; NULL: $TMPDIR or /tmp */
    /* Called with 0..1 (decoded time / duration), at most twice a second;
     * may be NULL. */
    void (*progress)(void *cls, double fraction);
    void *progress_cls;
    /* When non-NULL and it becomes non-zero, the transcode stops soon with
     * TRANSCODE_ECANCELED. */
    const atomic_int *cancel;
    /* Encoder threads for this one job: above 1, the audio is cut into
     * segments encoded at once and spliced with the bit reservoir kept
     * (segments.h); 1 (or less): one encoder, one pass. */
    int threads;
    /* With threads > 1, inputs whose container says they last less than
     * this (seconds) still take one pass; 0: every input is cut. */
    double parallel_min_seconds;
    /* Segment length in 1152 samples (at most 65536); 0: the default of
     * segments.h (192, about 5 s; longer for CBR). Small values are for
     * tests. */
    int segment_frames;
};

/* The defaults above: quality 2, no limits, one thread, parallel from
 * 60 s. */
void transcode_options_default(struct transcode_options *o);

enum {
    TRANSCODE_OK = 0,
    TRANSCODE_EMEDIA = -1,    /* permanent: no audio track, unreadable, nothing decodable */
    TRANSCODE_EIO = -2,       /* transient: the input or the output failed */
    TRANSCODE_ELIMIT = -3,    /* permanent: CPU time or output size limit reached */
    TRANSCODE_ECANCELED = -4, /* *cancel became non-zero */
    TRANSCODE_ENOMEM = -5,
};

struct transcode_result {
    double duration;  /* seconds of audio in the MP3 */
    int64_t bytes;    /* size of the MP3 */
    int sample_rate;  /* of the MP3 */
    int channels;     /* of the MP3: 1 or 2 */
    bool copied;      /* the source's MP3 packets were copied */
    bool picture;     /* a cover picture is in the tags */
    int segments;     /* segments encoded apart and spliced (0: one pass or a copy) */
    long raised;      /* frames whose bitrate the splice raised */
    char reason[256]; /* on failure: a sentence a user understands */
};

/* Runs the whole conversion. Returns TRANSCODE_OK or a TRANSCODE_E* code
 * with res->reason filled. Thread-safe: each call has its own state. */
int transcode(const struct transcode_input *in, const struct transcode_output *out,
              const struct transcode_options *o, struct transcode_result *res);

const char *transcode_strerror(int code);

#endif
