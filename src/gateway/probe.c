/* probe: see probe.h. */
#include "gateway/probe.h"

#include <libavformat/avformat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A probe score this high means the format's own prober recognised the
 * bytes, not a weak guess (AVPROBE_SCORE_MAX is 100). */
#define SCORE_MIN (AVPROBE_SCORE_MAX / 4)

/*
 * The containers and audio streams people upload, by libavformat demuxer
 * name. An allow-list, not a block-list: libavformat also reads text,
 * subtitles, still images, and scripts and playlists (concat, hls, dash,
 * sdp) that would make a reader open other files or the network, and new
 * FFmpeg versions add more of those.
 */
static const char *const media[] = {
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "flv",
    "live_flv",
    "mpegts",
    "mpeg",
    "asf",
    "ogg",
    "nut",
    "rm",
    "mxf",
    "dv",
    "gxf",
    "wtv",
    "caf",
    "wav",
    "w64",
    "aiff",
    "au",
    "voc",
    "mp3",
    "aac",
    "loas",
    "flac",
    "ac3",
    "eac3",
    "dts",
    "truehd",
    "mlp",
    "amr",
    "amrnb",
    "amrwb",
    "wv",
    "ape",
    "mpc",
    "mpc8",
    "tta",
    "xwma",
    "oma",
    "dsf",
};

bool probe_format_allowed(const char *name)
{
    if (name == NULL)
        return false;
    for (size_t i = 0; i < sizeof(media) / sizeof(media[0]); i++) {
        if (strcmp(name, media[i]) == 0)
            return true;
    }
    return false;
}

int probe_media(const unsigned char *buf, size_t len, char *name, size_t namelen)
{
    if (len == 0)
        return -1;
    if (len > PROBE_BYTES)
        len = PROBE_BYTES;
    /* The probers read up to AVPROBE_PADDING_SIZE zero bytes past the end. */
    unsigned char *padded = calloc(1, len + AVPROBE_PADDING_SIZE);
    if (padded == NULL)
        return -1;
    memcpy(padded, buf, len);
    AVProbeData pd = {.filename = "", .buf = padded, .buf_size = (int)len, .mime_type = NULL};
    int score = 0;
    const AVInputFormat *fmt = av_probe_input_format3(&pd, 1, &score);
    free(padded);
    if (fmt == NULL || score < SCORE_MIN || !probe_format_allowed(fmt->name))
        return -1;
    snprintf(name, namelen, "%s", fmt->name);
    return 0;
}
