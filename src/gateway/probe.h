/*
 * probe: tells a media container from anything else by its first bytes,
 * with libavformat's format probe (no file name, so an extension proves
 * nothing), before an upload is stored.
 */
#ifndef VID2MP3_PROBE_H
#define VID2MP3_PROBE_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes of the start of a file the probe looks at; more are not needed. */
#define PROBE_BYTES (64 * 1024)

/*
 * Returns 0 and the format's short name in name (e.g. "mov,mp4,m4a,3gp,
 * 3g2,mj2", "matroska,webm") when buf looks like one of the audio or video
 * containers of the allow-list in probe.c, else -1 (text, images,
 * subtitles, playlists, random bytes, nothing).
 */
int probe_media(const unsigned char *buf, size_t len, char *name, size_t namelen);

/* Whether name, a libavformat demuxer's short name (AVInputFormat.name,
 * e.g. "matroska,webm"), is one of the allow-list's media containers. The
 * converter checks the demuxer it opened with this too. */
bool probe_format_allowed(const char *name);

#endif
