/*
 * cover: the picture for an MP3's ID3v2 tag (DESIGN §6), from a media
 * file read through transcode_input's callbacks: the source's attached
 * picture (cover art of an M4A, MKV attachment, MP3 APIC) as it is when it
 * is JPEG or PNG, else one video frame from about 10% into the video,
 * scaled to at most 600 px on its longer side (aspect kept) and encoded as
 * JPEG. Audio-only input has none. It opens its own demuxer on the input
 * (seeking it to the start first, when it can seek), so run it before or
 * after the transcode's, not during.
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

struct AVInputFormat; /* libavformat's demuxer description */

/*
 * Reads the cover of the input. format is the demuxer to open it with, as
 * the caller's probe chose it (the transcode's: the input is probed once);
 * it is used as it is, with no probing, and is also the only format a
 * nested demuxer may use. NULL: cover_extract probes the first bytes
 * itself. Either way only a demuxer of the gateway's allow-list
 * (probe_format_allowed) ever parses the file: a format outside it, or a
 * weak guess, is refused before any demuxer reads the header.
 *
 * stop, when not NULL, is asked between reads and while looking for a
 * frame; once it returns non-zero the extraction ends with
 * TRANSCODE_ECANCELED (the caller knows whether that was a cancel or its
 * CPU limit). Blocks on in's callbacks.
 *
 * Returns 1 with a picture in *out, 0 when the input has none (audio only,
 * a format that is not allowed, or no frame could be decoded), or a
 * negative TRANSCODE_E* code: TRANSCODE_EIO when the input failed,
 * TRANSCODE_ECANCELED, TRANSCODE_ENOMEM. Decoders refuse frames of more
 * than 8192 x 8192 pixels, here and while the streams are analysed, and
 * the video is decoded for at most 64 packets.
 */
int cover_extract(const struct transcode_input *in, const struct AVInputFormat *format,
                  int (*stop)(void *cls), void *stop_cls, struct cover *out);
void cover_free(struct cover *c);

#endif
