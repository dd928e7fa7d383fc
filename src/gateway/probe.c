/* probe: see probe.h. */
#include "gateway/probe.h"

#include <libavformat/avformat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A probe score this high means the format's own prober recognised the
 * bytes, not a weak guess (AVPROBE_SCORE_MAX is 100). */
#define SCORE_MIN (AVPROBE_SCORE_MAX / 4)

/* Formats libavformat can read that hold no audio worth converting. */
static const char *const not_media[] = {
    "tty",      "srt",        "webvtt",     "ass",      "microdvd", "mpl2", "sami",
    "realtext", "subviewer",  "subviewer1", "jacosub",  "vplayer",  "pjs",  "stl",
    "lrc",      "ffmetadata", "image2",     "svg_pipe", "txt",      "scc",  "mcc",
};

static int refused(const char *name)
{
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, "_pipe") == 0)
        return 1; /* still images */
    for (size_t i = 0; i < sizeof(not_media) / sizeof(not_media[0]); i++) {
        if (strcmp(name, not_media[i]) == 0)
            return 1;
    }
    return 0;
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
    if (fmt == NULL || score < SCORE_MIN || refused(fmt->name))
        return -1;
    snprintf(name, namelen, "%s", fmt->name);
    return 0;
}
