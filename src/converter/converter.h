/*
 * converter: the Converter service (DESIGN §5-6): consumes VIDEO_QUEUE,
 * turns each job's video into an MP3 (transcode.h), stores it, marks the
 * job and publishes on MP3_QUEUE; and `vid2mp3 convert`, the same
 * transcode on local files.
 */
#ifndef VID2MP3_CONVERTER_H
#define VID2MP3_CONVERTER_H

/* `vid2mp3 converter`: runs CONVERTER_WORKERS workers until SIGTERM. */
int converter_main(int argc, char **argv);

/* `vid2mp3 convert IN OUT [--quality N|--bitrate K]`. */
int convert_main(int argc, char **argv);

#endif
