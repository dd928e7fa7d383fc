/*
 * transcode: see transcode.h.
 *
 * The flow: the input's format is probed once, on its first bytes, and
 * refused unless it is on the allow-list; cover_extract() reads the picture
 * on its own demuxer of that format; then one demuxer of that format over
 * the caller's callbacks, only the chosen audio stream read (the others are
 * AVDISCARD_ALL from the header on, so neither the stream analysis nor the
 * demuxer decodes or returns them), decoded, resampled when needed, cut into the encoder's frame
 * size by a FIFO and encoded; or, for MP3 sources, copied. The mp3 muxer writes into a spill buffer
 * (spill.h) because it seeks back at the end to fill in the Xing/LAME header; only a finished MP3
 * reaches the output callback.
 *
 * Every failure goes through fail(), which prefers what really happened
 * (cancel, CPU limit, input error, output limit) over the error code a
 * libav function turned it into.
 */
#include "converter/transcode.h"

#include "converter/cover.h"
#include "converter/mp3enc.h"
#include "converter/segments.h"
#include "converter/spill.h"
#include "core/log.h"
#include "gateway/probe.h"

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/avutil.h>
#include <libavutil/channel_layout.h>
#include <libavutil/intreadwrite.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define IN_BUFFER (64 * 1024)
/* What the demuxer may read and the time it may look at to learn the
 * streams: libavformat's defaults, written down so they stay bounded. */
#define PROBE_BYTES_MAX (5 * 1000 * 1000)
#define ANALYZE_US_MAX (5 * (int64_t)AV_TIME_BASE)
/* What a decoder probing a stream may allocate for one frame (8K x 8K),
 * for the streams that cannot be discarded before the analysis. */
#define PIXELS_MAX (8192 * 8192)
/* Undecodable packets skipped before the audio is declared broken. */
#define BAD_PACKETS_MAX 100
#define PROGRESS_INTERVAL 0.5
/* The CPU clock is a system call: read it every few callbacks. */
#define CPU_CHECK_EVERY 8

static const char *const R_UNREADABLE = "the file is not a video or audio file that can be read";
static const char *const R_NO_AUDIO = "the video has no audio track";
static const char *const R_UNDECODABLE = "the audio could not be decoded";
static const char *const R_UNSUPPORTED = "the audio is in a format that is not supported";

enum stop { STOP_NONE, STOP_CANCEL, STOP_CPU };

struct tc {
    const struct transcode_input *in;
    const struct transcode_options *o;
    struct transcode_result *res;

    enum stop stop;
    int in_error;    /* the input callbacks failed: not the media's fault */
    int64_t in_size; /* of the input, -1 when the source cannot tell */
    unsigned ticks;
    double cpu_start;
    double progress_at;  /* monotonic time of the last progress call, or 0 */
    double src_duration; /* seconds, 0 when unknown */

    struct cover cover;
    int have_cover;

    AVIOContext *in_pb;
    AVFormatContext *ifmt;
    AVStream *ist;
    AVCodecContext *dec;
    AVFrame *frame;
    AVPacket *pkt;
    int bad_packets;
    int64_t decoded_frames;

    /* encoding: set up at the first decoded frame */
    const AVCodec *encoder;
    AVCodecContext *enc;
    SwrContext *swr;
    enum AVSampleFormat swr_in_fmt;
    int swr_in_rate;
    AVChannelLayout swr_in_layout;
    int resample;   /* the decoded frames need swr */
    uint8_t **conv; /* swr's output, conv_cap samples per channel */
    int conv_cap;
    AVAudioFifo *fifo;
    AVFrame *eframe;
    AVPacket *opkt;
    int64_t samples_out; /* samples handed to the encoder */
    /* segment-parallel: t->enc only gives the stream's parameters, and the
     * PCM goes to segs (segments.h) */
    struct segments *segs;
    /* the newest encoded frame, held back until it is known whether it is
     * the last (whose end padding is set from the real sample count) */
    AVPacket *held;
    int64_t frames_out; /* encoded frames, the held one included */
    bool one_pass;      /* segs failed in a way one pass may not: worth a retry */

    /* copying */
    int copy;
    int64_t copy_samples;
    int64_t copy_packets;

    struct spill *spill;
    AVIOContext *out_pb;
    AVFormatContext *ofmt;
    AVStream *ost;
};

/* ---- logging ---------------------------------------------------------- */

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

/* libav's errors as our JSON lines; the rest of its chatter is dropped. The
 * logger adds the thread's request id, so lines land in the right job. */
static void on_av_log(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > av_log_get_level())
        return;
    char line[512];
    int prefix = 1;
    av_log_format_line2(avcl, level, fmt, vl, line, sizeof(line), &prefix);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n == 0)
        return;
    log_warn("libav reported a problem", json_pack("{s:o}", "detail", log_text(line)));
}

static void init_logging(void)
{
    av_log_set_level(AV_LOG_ERROR);
    av_log_set_callback(on_av_log);
}

/* ---- limits and failures ---------------------------------------------- */

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether to stop now: cancelled, or past the CPU limit (sticky). */
static int should_stop(struct tc *t)
{
    if (t->stop != STOP_NONE)
        return 1;
    if (t->o->cancel != NULL && atomic_load(t->o->cancel) != 0) {
        t->stop = STOP_CANCEL;
        return 1;
    }
    if (t->o->cpu_seconds_max > 0 && ++t->ticks % CPU_CHECK_EVERY == 0 &&
        thread_cpu() - t->cpu_start + (t->segs != NULL ? segments_cpu_seconds(t->segs) : 0) >
            t->o->cpu_seconds_max) {
        t->stop = STOP_CPU;
        return 1;
    }
    return 0;
}

static int set_reason(struct tc *t, int code, const char *reason)
{
    snprintf(t->res->reason, sizeof(t->res->reason), "%s", reason);
    return code;
}

/*
 * The TRANSCODE_E* code for a failure: what really happened when we know
 * it (the libav error is then only its echo), else averr's ENOMEM, else
 * code with reason.
 */
static int fail(struct tc *t, int averr, int code, const char *reason)
{
    if (t->stop == STOP_CANCEL)
        return set_reason(t, TRANSCODE_ECANCELED, "the conversion was cancelled");
    if (t->stop == STOP_CPU)
        return set_reason(t, TRANSCODE_ELIMIT,
                          "the conversion needed more processing time than allowed");
    if (t->in_error)
        return set_reason(t, TRANSCODE_EIO, "the file could not be read from storage");
    int se = t->spill != NULL ? spill_error(t->spill) : 0;
    if (se == -EFBIG)
        return set_reason(t, TRANSCODE_ELIMIT, "the MP3 would be larger than allowed");
    if (se != 0)
        return set_reason(t, TRANSCODE_EIO, "the MP3 could not be written to temporary storage");
    if (averr == AVERROR(ENOMEM))
        return set_reason(t, TRANSCODE_ENOMEM, "out of memory");
    return set_reason(t, code, reason);
}

/* ---- input ------------------------------------------------------------ */

static int in_read(void *opaque, uint8_t *buf, int len)
{
    struct tc *t = opaque;
    if (should_stop(t))
        return AVERROR_EXIT;
    long n = t->in->read(t->in->cls, buf, (size_t)len);
    if (n < 0) {
        t->in_error = 1;
        return AVERROR(EIO);
    }
    return n == 0 ? AVERROR_EOF : (int)n;
}

/* A seek past the end is the file's doing (a hostile or cut file points
 * there): refused without asking the source, and not an input error. Any
 * other failing seek is the source's, and fails the transcode as EIO, not
 * as a silently shortened MP3. */
static int64_t in_seek(void *opaque, int64_t offset, int whence)
{
    struct tc *t = opaque;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE)
        return t->in_size >= 0 ? t->in_size : AVERROR(ENOSYS);
    if (whence == SEEK_SET && t->in_size >= 0 && offset > t->in_size)
        return AVERROR(EINVAL);
    int64_t r = t->in->seek(t->in->cls, offset, whence);
    if (r < 0) {
        t->in_error = 1;
        return AVERROR(EIO);
    }
    return r;
}

static int on_interrupt(void *opaque)
{
    return should_stop(opaque);
}

/* Demuxers that would open another file or URL (a reference in a MOV,
 * a playlist entry) are refused here, whatever the protocol. */
static int refuse_io_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags,
                          AVDictionary **options)
{
    (void)s;
    (void)pb;
    (void)url;
    (void)flags;
    (void)options;
    return AVERROR(EPERM);
}

/* A reader over the callbacks from the start of the input, replacing
 * the one an earlier pass used (cover_extract moves the source). */
static void free_reader(struct tc *t)
{
    if (t->in_pb != NULL)
        av_freep(&t->in_pb->buffer); /* the probe may have replaced it */
    avio_context_free(&t->in_pb);
}

static int new_reader(struct tc *t)
{
    free_reader(t);
    if (t->in->seek(t->in->cls, 0, SEEK_SET) < 0) {
        t->in_error = 1;
        return fail(t, 0, TRANSCODE_EIO, "");
    }
    unsigned char *buf = av_malloc(IN_BUFFER);
    if (buf == NULL)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    t->in_pb = avio_alloc_context(buf, IN_BUFFER, 0, t, in_read, NULL, in_seek);
    if (t->in_pb == NULL) {
        av_free(buf);
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    }
    return 0;
}

/* The input's demuxer into *fmt, from libavformat's probe of the first
 * bytes (each demuxer's read_probe looks at a buffer; none parses the
 * file): only a demuxer of the allow-list (probe.h) ever reads the file,
 * in cover_extract or in open_input. */
static int probe_input(struct tc *t, const AVInputFormat **fmt)
{
    t->in_size = t->in->seek(t->in->cls, 0, TRANSCODE_SEEK_SIZE);
    if (t->in_size < 0)
        t->in_size = -1;
    int rc = new_reader(t);
    if (rc < 0)
        return rc;
    *fmt = NULL;
    rc = av_probe_input_buffer2(t->in_pb, fmt, "", NULL, 0, PROBE_BYTES_MAX);
    /* the gateway's threshold (probe.c): a weak guess is not a format */
    if (rc < AVPROBE_SCORE_MAX / 4 || *fmt == NULL || !probe_format_allowed((*fmt)->name))
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNREADABLE);
    free_reader(t); /* not held while cover_extract reads */
    return 0;
}

/*
 * Only audio is analysed: the streams the header already typed as
 * something else (MP4, Matroska, MPEG-TS type theirs) are AVDISCARD_ALL
 * before avformat_find_stream_info, which then neither reads nor decodes
 * them (a hostile 16K H.264 video would cost CPU and memory for nothing).
 * A stream of unknown type is left for the analysis to tell.
 */
static void discard_non_audio(AVFormatContext *f)
{
    for (unsigned i = 0; i < f->nb_streams; i++) {
        enum AVMediaType type = f->streams[i]->codecpar->codec_type;
        if (type != AVMEDIA_TYPE_AUDIO && type != AVMEDIA_TYPE_UNKNOWN)
            f->streams[i]->discard = AVDISCARD_ALL;
    }
}

/* avformat_find_stream_info on t->ifmt, its probing decoders refusing
 * frames larger than PIXELS_MAX (for what discard_non_audio left). */
static int find_stream_info(struct tc *t)
{
    unsigned n = t->ifmt->nb_streams;
    AVDictionary **opts = av_calloc(n > 0 ? n : 1, sizeof(*opts));
    int rc = opts != NULL ? 0 : AVERROR(ENOMEM);
    for (unsigned i = 0; rc >= 0 && i < n; i++)
        rc = av_dict_set_int(&opts[i], "max_pixels", PIXELS_MAX, 0);
    if (rc >= 0)
        rc = avformat_find_stream_info(t->ifmt, opts);
    for (unsigned i = 0; opts != NULL && i < n; i++)
        av_dict_free(&opts[i]);
    av_free(opts);
    return rc;
}

/* The demuxer fmt (probe_input's) over the callbacks, no probing again,
 * then the audio streams found. */
static int open_input(struct tc *t, const AVInputFormat *fmt)
{
    int rc = new_reader(t);
    if (rc < 0)
        return rc;
    t->ifmt = avformat_alloc_context();
    if (t->ifmt == NULL)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    t->ifmt->pb = t->in_pb;
    t->ifmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    t->ifmt->io_open = refuse_io_open;
    t->ifmt->interrupt_callback = (AVIOInterruptCB){on_interrupt, t};
    t->ifmt->probesize = PROBE_BYTES_MAX;
    t->ifmt->max_analyze_duration = ANALYZE_US_MAX;
    /* belt and braces for nested demuxers, which inherit these lists */
    t->ifmt->format_whitelist = av_strdup(fmt->name);
    t->ifmt->protocol_whitelist = av_strdup("");
    if (t->ifmt->format_whitelist == NULL || t->ifmt->protocol_whitelist == NULL)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    rc = avformat_open_input(&t->ifmt, "", fmt, NULL); /* frees ifmt on failure */
    if (rc < 0)
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNREADABLE);
    discard_non_audio(t->ifmt);
    rc = find_stream_info(t);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNREADABLE);
    return 0;
}

/* The picture for the tags (cover.h), read with the same demuxer and
 * under the same cancel and CPU limit. Its failures are the input's,
 * the limit's or memory's: a file without a picture is not one. */
static int read_cover(struct tc *t, const AVInputFormat *fmt)
{
    int rc = cover_extract(t->in, fmt, on_interrupt, t, &t->cover);
    if (rc >= 0) {
        t->have_cover = rc == 1;
        return 0;
    }
    if (rc == TRANSCODE_ENOMEM)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    if (rc != TRANSCODE_ECANCELED || t->stop == STOP_NONE)
        t->in_error = 1;
    return fail(t, 0, TRANSCODE_EIO, "");
}

/* The audio stream to convert: the first default one we can decode, else
 * libavformat's best; every other stream is discarded unread. */
static int pick_stream(struct tc *t)
{
    AVFormatContext *f = t->ifmt;
    int audio = 0, pick = -1;
    for (unsigned i = 0; i < f->nb_streams; i++) {
        const AVCodecParameters *par = f->streams[i]->codecpar;
        if (par->codec_type != AVMEDIA_TYPE_AUDIO)
            continue;
        audio++;
        if ((f->streams[i]->disposition & AV_DISPOSITION_DEFAULT) &&
            avcodec_find_decoder(par->codec_id) != NULL) {
            pick = (int)i;
            break;
        }
    }
    if (audio == 0)
        return fail(t, 0, TRANSCODE_EMEDIA, R_NO_AUDIO);
    if (pick < 0)
        pick = av_find_best_stream(f, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    if (pick < 0 || avcodec_find_decoder(f->streams[pick]->codecpar->codec_id) == NULL)
        return fail(t, 0, TRANSCODE_EMEDIA, R_UNSUPPORTED);
    for (unsigned i = 0; i < f->nb_streams; i++) {
        if ((int)i != pick)
            f->streams[i]->discard = AVDISCARD_ALL;
    }
    t->ist = f->streams[pick];
    if (t->ist->duration > 0)
        t->src_duration = (double)t->ist->duration * av_q2d(t->ist->time_base);
    else if (f->duration > 0)
        t->src_duration = (double)f->duration / AV_TIME_BASE;
    return 0;
}

/* MP3's sample rates: the source's when legal, else the nearest lower
 * one, keeping the 44.1 kHz family (88.2 kHz -> 44.1 kHz, 96 -> 48). */
static int mp3_rate(int rate)
{
    static const int legal[] = {48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000};
    if (rate > 48000)
        return rate % 44100 == 0 ? 44100 : 48000;
    for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++) {
        if (rate >= legal[i])
            return legal[i];
    }
    return 8000;
}

/* ---- output ----------------------------------------------------------- */

static const char *meta(const struct tc *t, const char *key)
{
    const AVDictionaryEntry *e = av_dict_get(t->ifmt->metadata, key, NULL, 0);
    if (e == NULL)
        e = av_dict_get(t->ist->metadata, key, NULL, 0);
    return e != NULL && e->value[0] != '\0' ? e->value : NULL;
}

/* The ID3v2 tags: the source's, the title falling back to the file name
 * without its directory and extension. */
static int set_tags(struct tc *t)
{
    static const char *const copied[] = {"artist", "album", "album_artist",
                                         "date",   "genre", "track"};
    AVDictionary **d = &t->ofmt->metadata;
    const char *title = meta(t, "title");
    int rc = 0;
    if (title != NULL) {
        rc = av_dict_set(d, "title", title, 0);
    } else if (t->in->filename != NULL) {
        const char *base = strrchr(t->in->filename, '/');
        base = base != NULL ? base + 1 : t->in->filename;
        const char *dot = strrchr(base, '.');
        size_t len = dot != NULL && dot != base ? (size_t)(dot - base) : strlen(base);
        if (len > 0) {
            char *s = av_strndup(base, len);
            if (s == NULL)
                return AVERROR(ENOMEM);
            rc = av_dict_set(d, "title", s, AV_DICT_DONT_STRDUP_VAL);
        }
    }
    for (size_t i = 0; rc >= 0 && i < sizeof(copied) / sizeof(copied[0]); i++) {
        const char *v = meta(t, copied[i]);
        if (v != NULL)
            rc = av_dict_set(d, copied[i], v, 0);
    }
    return rc;
}

static int open_output(struct tc *t)
{
    int rc = avformat_alloc_output_context2(&t->ofmt, NULL, "mp3", NULL);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_EIO, "the MP3 muxer is not available");
    t->spill = spill_new(t->o->tmp_dir, SPILL_MEM_MAX_DEFAULT, t->o->output_bytes_max);
    if (t->spill == NULL || (t->out_pb = spill_avio_new(t->spill)) == NULL)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    t->ofmt->pb = t->out_pb;
    t->ofmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    t->ost = avformat_new_stream(t->ofmt, NULL);
    if (t->ost == NULL || set_tags(t) < 0)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    return 0;
}

/* The attached-picture stream, from which the muxer writes an APIC frame. */
static int add_picture_stream(struct tc *t)
{
    AVStream *st = avformat_new_stream(t->ofmt, NULL);
    if (st == NULL)
        return AVERROR(ENOMEM);
    st->codecpar->codec_type = AVMEDIA_TYPE_VIDEO;
    st->codecpar->codec_id =
        strcmp(t->cover.mime, "image/png") == 0 ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG;
    st->codecpar->width = t->cover.width;
    st->codecpar->height = t->cover.height;
    st->disposition = AV_DISPOSITION_ATTACHED_PIC;
    int rc = av_dict_set(&st->metadata, "title", "Cover (front)", 0);
    if (rc >= 0)
        rc = av_dict_set(&st->metadata, "comment", "Cover (front)", 0);
    return rc;
}

static int write_picture(struct tc *t)
{
    AVPacket *p = av_packet_alloc();
    if (p == NULL)
        return AVERROR(ENOMEM);
    int rc = av_new_packet(p, (int)t->cover.len);
    if (rc >= 0) {
        memcpy(p->data, t->cover.data, t->cover.len);
        p->stream_index = 1;
        p->flags |= AV_PKT_FLAG_KEY;
        p->pts = p->dts = 0;
        rc = av_write_frame(t->ofmt, p);
    }
    av_packet_free(&p);
    return rc;
}

/* Once the audio stream's parameters are known: the header (ID3v2 tag and
 * Xing placeholder), then the picture, before any audio. */
static int write_header(struct tc *t)
{
    int rc = 0;
    if (t->have_cover && t->cover.len > 0 && t->cover.len < INT32_MAX &&
        (rc = add_picture_stream(t)) < 0)
        return fail(t, rc, TRANSCODE_ENOMEM, "out of memory");
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "id3v2_version", "3", 0);
    av_dict_set(&opts, "write_xing", "1", 0);
    rc = avformat_write_header(t->ofmt, &opts);
    av_dict_free(&opts);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_EIO, "the MP3 could not be written");
    if (t->ofmt->nb_streams > 1) {
        rc = write_picture(t);
        if (rc < 0)
            return fail(t, rc, TRANSCODE_EIO, "the MP3 could not be written");
        t->res->picture = true;
    }
    return 0;
}

/* Writes one packet of the audio stream (whose timestamps are in tb) and
 * unreferences it. */
static int write_audio(struct tc *t, AVPacket *p, AVRational tb)
{
    av_packet_rescale_ts(p, tb, t->ost->time_base);
    p->stream_index = 0;
    int rc = av_write_frame(t->ofmt, p);
    av_packet_unref(p);
    if (rc < 0 || spill_error(t->spill) != 0)
        return fail(t, rc, TRANSCODE_EIO, "the MP3 could not be written");
    return 0;
}

static void progress(struct tc *t, const AVPacket *p)
{
    if (t->o->progress == NULL || t->src_duration <= 0)
        return;
    int64_t ts = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
    if (ts == AV_NOPTS_VALUE)
        return;
    double now = monotonic();
    if (t->progress_at != 0 && now - t->progress_at < PROGRESS_INTERVAL)
        return;
    if (t->ist->start_time != AV_NOPTS_VALUE)
        ts -= t->ist->start_time;
    double f = (double)ts * av_q2d(t->ist->time_base) / t->src_duration;
    t->progress_at = now;
    t->o->progress(t->o->progress_cls, f < 0 ? 0 : f > 1 ? 1 : f);
}

/* ---- copying ---------------------------------------------------------- */

static int copy_begin(struct tc *t)
{
    int rc = avcodec_parameters_copy(t->ost->codecpar, t->ist->codecpar);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_ENOMEM, "out of memory");
    t->ost->codecpar->codec_tag = 0;
    t->ost->time_base = (AVRational){1, t->ist->codecpar->sample_rate};
    t->res->copied = true;
    return write_header(t);
}

/* The source's own timestamps may have gaps or none (AVI): the MP3 gets a
 * running count of samples instead. */
static int copy_packet(struct tc *t, AVPacket *p)
{
    const AVCodecParameters *par = t->ist->codecpar;
    AVRational sr = {1, par->sample_rate};
    int64_t n = p->duration > 0       ? av_rescale_q(p->duration, t->ist->time_base, sr)
                : par->frame_size > 0 ? par->frame_size
                                      : 1152;
    p->pts = p->dts = t->copy_samples;
    p->duration = n;
    p->pos = -1;
    t->copy_samples += n;
    t->copy_packets++;
    return write_audio(t, p, sr);
}

/* ---- encoding --------------------------------------------------------- */

/* The frame's channel layout, with an order when the container gave only
 * a count. */
static int frame_layout(const AVFrame *f, AVChannelLayout *out)
{
    if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) {
        av_channel_layout_default(out, f->ch_layout.nb_channels);
        return 0;
    }
    return av_channel_layout_copy(out, &f->ch_layout);
}

/* (Re)builds the resampler for frames like f; none when f is already in
 * the encoder's format, rate and layout. */
static int setup_resampler(struct tc *t, const AVFrame *f)
{
    swr_free(&t->swr);
    av_channel_layout_uninit(&t->swr_in_layout);
    int rc = frame_layout(f, &t->swr_in_layout);
    if (rc < 0)
        return rc;
    t->swr_in_fmt = f->format;
    t->swr_in_rate = f->sample_rate;
    t->resample = f->format != t->enc->sample_fmt || f->sample_rate != t->enc->sample_rate ||
                  av_channel_layout_compare(&t->swr_in_layout, &t->enc->ch_layout) != 0;
    if (!t->resample)
        return 0;
    /* swr's default matrix for 5.1/7.1 -> stereo (centre and surround at
     * -3 dB), as the ffmpeg command line does */
    rc = swr_alloc_set_opts2(&t->swr, &t->enc->ch_layout, t->enc->sample_fmt, t->enc->sample_rate,
                             &t->swr_in_layout, f->format, f->sample_rate, 0, NULL);
    if (rc < 0)
        return rc;
    return swr_init(t->swr);
}

/* Whether this job's audio is cut into segments encoded at once. */
static bool parallel(const struct tc *t)
{
    const struct transcode_options *o = t->o;
    return o->threads > 1 && (o->parallel_min_seconds <= 0 || t->src_duration <= 0 ||
                              t->src_duration >= o->parallel_min_seconds);
}

static int segment_sink(void *cls, AVPacket *p);
static int write_encoded(struct tc *t, AVPacket *p);

static int setup_encoder(struct tc *t, const AVFrame *f)
{
    int channels = f->ch_layout.nb_channels;
    if (channels <= 0 || f->sample_rate <= 0)
        return fail(t, 0, TRANSCODE_EMEDIA, R_UNDECODABLE);
    struct mp3enc_settings st = {
        .quality = t->o->quality,
        .bitrate = t->o->bitrate,
        .sample_fmt = mp3enc_pick_format(f->format),
        .sample_rate = mp3_rate(f->sample_rate),
        .channels = channels == 1 ? 1 : 2,
    };
    int rc = 0;
    t->enc = mp3enc_open(&st, &rc);
    if (t->enc == NULL && rc == AVERROR_ENCODER_NOT_FOUND)
        return fail(t, rc, TRANSCODE_EIO, "the MP3 encoder is not available");
    if (t->enc == NULL)
        return fail(t, rc, TRANSCODE_EIO, "the MP3 encoder refused the settings");
    t->encoder = t->enc->codec;
    AVCodecContext *e = t->enc;
    if (parallel(t)) {
        struct segments_config sc = {
            .enc = st,
            .threads = t->o->threads,
            .segment_frames = t->o->segment_frames,
            .sink = segment_sink,
            .sink_cls = t,
            .cancel = t->o->cancel,
        };
        if ((t->segs = segments_new(&sc)) == NULL)
            return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    }
    rc = setup_resampler(t, f);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
    int fs = e->frame_size > 0 ? e->frame_size : 1152;
    t->fifo = av_audio_fifo_alloc(e->sample_fmt, e->ch_layout.nb_channels, fs * 4);
    t->eframe = av_frame_alloc();
    t->opkt = av_packet_alloc();
    if (t->fifo == NULL || t->eframe == NULL || t->opkt == NULL)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    t->eframe->format = e->sample_fmt;
    t->eframe->sample_rate = e->sample_rate;
    t->eframe->nb_samples = fs;
    if ((rc = av_channel_layout_copy(&t->eframe->ch_layout, &e->ch_layout)) < 0 ||
        (rc = av_frame_get_buffer(t->eframe, 0)) < 0)
        return fail(t, rc, TRANSCODE_ENOMEM, "out of memory");
    rc = avcodec_parameters_from_context(t->ost->codecpar, e);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_ENOMEM, "out of memory");
    t->ost->time_base = e->time_base;
    t->res->sample_rate = e->sample_rate;
    t->res->channels = e->ch_layout.nb_channels;
    return write_header(t);
}

/* Hands the encoder's finished packets to the muxer. */
static int drain_encoder(struct tc *t)
{
    for (;;) {
        int rc = avcodec_receive_packet(t->enc, t->opkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
        rc = write_encoded(t, t->opkt);
        if (rc < 0)
            return rc;
    }
}

/* An encoded frame (timestamps in the encoder's time base) on its way to
 * the muxer: the one before it goes, it is held back. */
static int write_encoded(struct tc *t, AVPacket *p)
{
    int rc = 0;
    if (t->held == NULL && (t->held = av_packet_alloc()) == NULL) {
        av_packet_unref(p);
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    }
    if (t->held->data != NULL)
        rc = write_audio(t, t->held, t->enc->time_base);
    av_packet_move_ref(t->held, p);
    t->frames_out++;
    return rc;
}

/* The last frame, with the end padding the LAME header gets: what makes
 * a gapless decoder stop at the last real sample. libavcodec's wrapper
 * marks at most one frame's worth, short by up to 46 samples when the
 * length is just past a whole number of frames. */
static int write_last(struct tc *t)
{
    if (t->held == NULL || t->held->data == NULL)
        return 0;
    int fs = t->enc->frame_size > 0 ? t->enc->frame_size : 1152;
    int64_t pad = t->frames_out * fs - t->enc->initial_padding - t->samples_out;
    size_t size = 0;
    uint8_t *sd = av_packet_get_side_data(t->held, AV_PKT_DATA_SKIP_SAMPLES, &size);
    if (sd == NULL || size < 10) {
        sd = av_packet_new_side_data(t->held, AV_PKT_DATA_SKIP_SAMPLES, 10);
        if (sd == NULL)
            return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
        memset(sd, 0, 10);
    }
    if (pad >= 0 && pad < INT32_MAX)
        AV_WL32(sd + 4, (uint32_t)pad);
    return write_audio(t, t->held, t->enc->time_base);
}

/* The sink of the segments: a spliced frame into the muxer. */
static int segment_sink(void *cls, AVPacket *p)
{
    return write_encoded(cls, p);
}

/* A failure of the segments (or of segment_sink: already failed) as the
 * transcode's. */
static int segments_failed(struct tc *t, int rc)
{
    switch (rc) {
    case SEGMENTS_ECANCELED:
        return fail(t, 0, TRANSCODE_ECANCELED, "");
    case SEGMENTS_ENOMEM:
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    case SEGMENTS_ESPLICE:
        t->one_pass = true;
        return fail(t, 0, TRANSCODE_EIO, "the MP3's segments could not be joined");
    case SEGMENTS_EENCODER:
        t->one_pass = true;
        return fail(t, 0, TRANSCODE_EIO, "a segment's MP3 encoder failed");
    default:
        return rc; /* the sink's: write_audio failed the transcode already */
    }
}

/* Encodes whole frames from the FIFO; at the end (flush) also the last
 * partial one, padded with silence if the encoder wants whole frames. */
static int encode_fifo(struct tc *t, int flush)
{
    int fs = t->enc->frame_size > 0 ? t->enc->frame_size : 1152;
    int small_last = (t->encoder->capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME) != 0;
    for (;;) {
        int have = av_audio_fifo_size(t->fifo);
        if (have == 0 || (have < fs && !flush))
            return 0;
        int n = have < fs ? have : fs;
        int rc = av_frame_make_writable(t->eframe);
        if (rc < 0)
            return fail(t, rc, TRANSCODE_ENOMEM, "out of memory");
        if (av_audio_fifo_read(t->fifo, (void **)t->eframe->data, n) != n)
            return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
        t->eframe->nb_samples = n;
        if (n < fs && !small_last) {
            av_samples_set_silence(t->eframe->data, n, fs - n, t->enc->ch_layout.nb_channels,
                                   t->enc->sample_fmt);
            t->eframe->nb_samples = fs;
        }
        t->eframe->pts = t->samples_out;
        t->samples_out += n;
        if (t->segs != NULL) {
            /* the segments pad the last frame themselves */
            rc = segments_write(t->segs, (const uint8_t *const *)t->eframe->data, n);
            if (rc < 0)
                return segments_failed(t, rc);
            continue;
        }
        rc = avcodec_send_frame(t->enc, t->eframe);
        if (rc < 0)
            return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
        rc = drain_encoder(t);
        if (rc < 0)
            return rc;
    }
}

/* Makes t->conv hold at least n samples per channel. */
static int conv_reserve(struct tc *t, int n)
{
    if (n <= t->conv_cap)
        return 0;
    if (t->conv != NULL)
        av_freep(&t->conv[0]);
    av_freep(&t->conv);
    t->conv_cap = 0;
    int rc = av_samples_alloc_array_and_samples(&t->conv, NULL, t->enc->ch_layout.nb_channels, n,
                                                t->enc->sample_fmt, 0);
    if (rc < 0)
        return rc;
    t->conv_cap = n;
    return 0;
}

/* Resamples what swr holds plus f (NULL: only drain swr) into the FIFO. */
static int resample_into_fifo(struct tc *t, const AVFrame *f)
{
    int in = f != NULL ? f->nb_samples : 0;
    int room = swr_get_out_samples(t->swr, in);
    if (room < 0)
        return room;
    int rc = conv_reserve(t, room > 0 ? room : 1);
    if (rc < 0)
        return rc;
    int n = swr_convert(t->swr, t->conv, room,
                        f != NULL ? (const uint8_t **)f->extended_data : NULL, in);
    if (n < 0)
        return n;
    if (n > 0 && av_audio_fifo_write(t->fifo, (void **)t->conv, n) != n)
        return AVERROR(ENOMEM);
    return 0;
}

/* One decoded frame into the encoder. */
static int feed(struct tc *t, const AVFrame *f)
{
    int rc;
    if (t->enc == NULL) {
        rc = setup_encoder(t, f);
        if (rc < 0)
            return rc;
    } else if (f->format != t->swr_in_fmt || f->sample_rate != t->swr_in_rate ||
               f->ch_layout.nb_channels != t->swr_in_layout.nb_channels) {
        /* the stream changed on the way (a new AAC configuration in a TS):
         * drain what the old resampler holds, then a new one */
        if (t->resample && (rc = resample_into_fifo(t, NULL)) < 0)
            return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
        rc = setup_resampler(t, f);
        if (rc < 0)
            return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
    }
    if (t->resample)
        rc = resample_into_fifo(t, f);
    else
        rc = av_audio_fifo_write(t->fifo, (void **)f->extended_data, f->nb_samples) == f->nb_samples
                 ? 0
                 : AVERROR(ENOMEM);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
    return encode_fifo(t, 0);
}

static int bad_packet(struct tc *t, int averr)
{
    if (averr == AVERROR(ENOMEM) || ++t->bad_packets > BAD_PACKETS_MAX)
        return fail(t, averr, TRANSCODE_EMEDIA, R_UNDECODABLE);
    return 0;
}

/* Sends p (NULL: the end) to the decoder and feeds what comes out. */
static int decode_packet(struct tc *t, const AVPacket *p)
{
    int rc = avcodec_send_packet(t->dec, p);
    if (rc < 0 && rc != AVERROR(EAGAIN) && rc != AVERROR_EOF)
        return bad_packet(t, rc); /* skipped: damage inside the stream */
    for (;;) {
        rc = avcodec_receive_frame(t->dec, t->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            return bad_packet(t, rc);
        t->decoded_frames++;
        rc = t->frame->nb_samples > 0 ? feed(t, t->frame) : 0;
        av_frame_unref(t->frame);
        if (rc < 0)
            return rc;
    }
}

static int open_decoder(struct tc *t)
{
    const AVCodec *codec = avcodec_find_decoder(t->ist->codecpar->codec_id);
    if (codec == NULL)
        return fail(t, 0, TRANSCODE_EMEDIA, R_UNSUPPORTED);
    t->dec = avcodec_alloc_context3(codec);
    if (t->dec == NULL)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    int rc = avcodec_parameters_to_context(t->dec, t->ist->codecpar);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_ENOMEM, "out of memory");
    t->dec->pkt_timebase = t->ist->time_base;
    rc = avcodec_open2(t->dec, codec, NULL);
    if (rc < 0)
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNSUPPORTED);
    t->frame = av_frame_alloc();
    if (t->frame == NULL)
        return fail(t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
    return 0;
}

/* Whether the source's MP3 can go into the output as it is. */
static int can_copy(const struct tc *t)
{
    const AVCodecParameters *par = t->ist->codecpar;
    return par->codec_id == AV_CODEC_ID_MP3 && par->sample_rate > 0 &&
           mp3_rate(par->sample_rate) == par->sample_rate && par->ch_layout.nb_channels >= 1 &&
           par->ch_layout.nb_channels <= 2;
}

/* ---- the whole run ---------------------------------------------------- */

/* Reads the audio stream to its end, copying or decoding each packet. A
 * read error that is not the input's nor ours ends the stream where it is
 * damaged or cut, as the ffmpeg command line does; what was read counts. */
static int run(struct tc *t)
{
    int rc;
    for (;;) {
        if (should_stop(t))
            return fail(t, 0, TRANSCODE_ECANCELED, "");
        rc = av_read_frame(t->ifmt, t->pkt);
        if (rc == AVERROR(EAGAIN))
            continue;
        if (rc < 0) {
            if (t->stop != STOP_NONE || t->in_error)
                return fail(t, rc, TRANSCODE_EIO, "");
            if (rc == AVERROR(ENOMEM))
                return fail(t, rc, TRANSCODE_ENOMEM, "out of memory");
            break;
        }
        if (t->pkt->stream_index != t->ist->index) {
            av_packet_unref(t->pkt);
            continue;
        }
        progress(t, t->pkt);
        rc = t->copy ? copy_packet(t, t->pkt) : decode_packet(t, t->pkt);
        av_packet_unref(t->pkt);
        if (rc < 0)
            return rc;
    }
    if (t->copy) {
        if (t->copy_packets == 0)
            return fail(t, 0, TRANSCODE_EMEDIA, R_UNDECODABLE);
        t->res->duration = (double)t->copy_samples / t->ist->codecpar->sample_rate;
        t->res->sample_rate = t->ist->codecpar->sample_rate;
        t->res->channels = t->ist->codecpar->ch_layout.nb_channels;
        return 0;
    }
    rc = decode_packet(t, NULL);
    if (rc < 0)
        return rc;
    if (t->enc == NULL)
        return fail(t, 0, TRANSCODE_EMEDIA, R_UNDECODABLE);
    if (t->resample && (rc = resample_into_fifo(t, NULL)) < 0)
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
    if ((rc = encode_fifo(t, 1)) < 0)
        return rc;
    if (t->segs != NULL) {
        if ((rc = segments_finish(t->segs)) < 0)
            return segments_failed(t, rc);
        if ((rc = write_last(t)) < 0)
            return rc;
        t->res->segments = segments_count(t->segs);
        t->res->raised = segments_raised(t->segs);
        t->res->duration = (double)t->samples_out / t->enc->sample_rate;
        return 0;
    }
    if ((rc = avcodec_send_frame(t->enc, NULL)) < 0)
        return fail(t, rc, TRANSCODE_EMEDIA, R_UNDECODABLE);
    if ((rc = drain_encoder(t)) < 0 || (rc = write_last(t)) < 0)
        return rc;
    t->res->duration = (double)t->samples_out / t->enc->sample_rate;
    return 0;
}

/* The trailer (the muxer seeks back to fill in the Xing/LAME header),
 * then the whole MP3 to the output. */
static int finish(struct tc *t, const struct transcode_output *out)
{
    int rc = av_write_trailer(t->ofmt);
    avio_flush(t->out_pb);
    if (rc < 0 || t->out_pb->error < 0 || spill_error(t->spill) != 0)
        return fail(t, rc, TRANSCODE_EIO, "the MP3 could not be written");
    t->res->bytes = spill_size(t->spill);
    rc = spill_drain(t->spill, out->write, out->cls);
    if (rc != 0)
        return set_reason(t, TRANSCODE_EIO, "the MP3 could not be stored");
    return 0;
}

static void cleanup(struct tc *t)
{
    avformat_free_context(t->ofmt); /* the muxer's deinit frees what it queued */
    spill_avio_free(&t->out_pb);
    spill_free(t->spill);
    av_packet_free(&t->opkt);
    av_frame_free(&t->eframe);
    av_audio_fifo_free(t->fifo);
    if (t->conv != NULL)
        av_freep(&t->conv[0]);
    av_freep(&t->conv);
    swr_free(&t->swr);
    av_channel_layout_uninit(&t->swr_in_layout);
    segments_free(t->segs); /* first: its threads may still encode */
    av_packet_free(&t->held);
    avcodec_free_context(&t->enc);
    av_frame_free(&t->frame);
    av_packet_free(&t->pkt);
    avcodec_free_context(&t->dec);
    avformat_close_input(&t->ifmt);
    free_reader(t);
    if (t->have_cover)
        cover_free(&t->cover);
}

void transcode_options_default(struct transcode_options *o)
{
    memset(o, 0, sizeof(*o));
    o->quality = 2;
    o->threads = 1;
    o->parallel_min_seconds = 60;
}

/* One attempt with options o: *one_pass says whether one pass is worth a
 * try after a failure, *cpu the CPU seconds it used. */
static int transcode_once(const struct transcode_input *in, const struct transcode_output *out,
                          const struct transcode_options *o, struct transcode_result *res,
                          bool *one_pass, double *cpu)
{
    memset(res, 0, sizeof(*res));
    struct tc t = {.in = in, .o = o, .res = res, .cpu_start = thread_cpu()};

    const AVInputFormat *fmt = NULL;
    int rc;
    if ((rc = probe_input(&t, &fmt)) < 0 || (rc = read_cover(&t, fmt)) < 0 ||
        (rc = open_input(&t, fmt)) < 0 || (rc = pick_stream(&t)) < 0 || (rc = open_output(&t)) < 0)
        goto out;
    t.pkt = av_packet_alloc();
    if (t.pkt == NULL) {
        rc = fail(&t, AVERROR(ENOMEM), TRANSCODE_ENOMEM, "out of memory");
        goto out;
    }
    t.copy = can_copy(&t);
    rc = t.copy ? copy_begin(&t) : open_decoder(&t);
    if (rc < 0 || (rc = run(&t)) < 0 || (rc = finish(&t, out)) < 0)
        goto out;
    rc = TRANSCODE_OK;
out:
    *cpu = thread_cpu() - t.cpu_start + (t.segs != NULL ? segments_cpu_seconds(t.segs) : 0);
    cleanup(&t);
    *one_pass = rc == TRANSCODE_EIO && t.one_pass && t.stop == STOP_NONE;
    if (rc != TRANSCODE_OK && res->reason[0] == '\0')
        set_reason(&t, rc, transcode_strerror(rc));
    return rc;
}

int transcode(const struct transcode_input *in, const struct transcode_output *out,
              const struct transcode_options *o, struct transcode_result *res)
{
    pthread_once(&log_once, init_logging);
    struct transcode_options defaults;
    if (o == NULL) {
        transcode_options_default(&defaults);
        o = &defaults;
    }
    bool one_pass = false;
    double cpu = 0;
    int rc = transcode_once(in, out, o, res, &one_pass, &cpu);
    if (rc != TRANSCODE_OK && one_pass) {
        /* a join the splice could not make, or a segment's encoder that
         * failed: nothing reached the output; one pass instead, within
         * what is left of the CPU limit */
        log_warn("the segments failed: converting in one pass",
                 json_pack("{s:s}", "reason", res->reason));
        struct transcode_options one = *o;
        one.threads = 1;
        if (o->cpu_seconds_max > 0)
            one.cpu_seconds_max = o->cpu_seconds_max - cpu > 1e-6 ? o->cpu_seconds_max - cpu : 1e-6;
        rc = transcode_once(in, out, &one, res, &one_pass, &cpu);
    }
    return rc;
}

const char *transcode_strerror(int code)
{
    switch (code) {
    case TRANSCODE_OK:
        return "success";
    case TRANSCODE_EMEDIA:
        return "the file cannot be converted";
    case TRANSCODE_EIO:
        return "input or output failed";
    case TRANSCODE_ELIMIT:
        return "a conversion limit was reached";
    case TRANSCODE_ECANCELED:
        return "the conversion was cancelled";
    case TRANSCODE_ENOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}
