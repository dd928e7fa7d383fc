/*
 * cover: the picture for an MP3's ID3v2 tag (DESIGN §6), from a media
 * file read through transcode_input's callbacks: the source's attached
 * picture (cover art of an M4A, MKV attachment, MP3 APIC) as it is when it
 * is JPEG or PNG, else one video frame from about 10% into the video,
 * scaled to at most 600 px on its longer side (aspect kept) and encoded as
 * JPEG. Audio-only input has none. It opens its own demuxer on the input
 * (seeking it), so run it before or after the transcode's, not during.
 */
#ifndef VID2MP3_COVER_H
#define VID2MP3_COVER_H

#include <stddef.h>

#include "converter/transcode.h"

#define COVER_MAX_SIDE 600

struct cover {
    unsigned char *data; /* the encoded picture (caller frees with cover_free) */
    size_t len;
    const char *mime; /* "image/jpeg" or "image/png" */
    int width, height;
};

/* Returns 1 with a picture in *out, 0 when the input has none (audio only,
 * or no frame could be decoded), or a negative TRANSCODE_E* code when the
 * input failed (TRANSCODE_EIO). A CPU limit is not applied here: one frame
 * is cheap, and a hostile file that makes it costly is bounded by decoding
 * at most 64 packets of the video stream. */
int cover_extract(const struct transcode_input *in, struct cover *out);
void cover_free(struct cover *c);

#endif
