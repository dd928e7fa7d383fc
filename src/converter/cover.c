/*
 * cover: see cover.h.
 *
 * Every function below returns 1 when it produced what it was asked for,
 * 0 when the input has nothing usable (not an error: the transcode decides
 * whether the file is good), or TRANSCODE_ENOMEM. A failure of the input's
 * callbacks is recorded in struct source and turned into TRANSCODE_EIO by
 * cover_extract, whatever the demuxer made of it; so is the caller's stop,
 * turned into TRANSCODE_ECANCELED.
 */
#include "converter/cover.h"
#include "gateway/probe.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IO_BUFFER_BYTES (64 * 1024)
#define PROBE_BYTES_MAX (5 * 1024 * 1024)
#define ANALYZE_SECONDS_MAX 5
/* A picture wider or taller than this is hostile, not a cover. */
#define SIDE_MAX 16384
/* What a decoder may allocate for one frame (8K x 8K). */
#define PIXELS_MAX (8192 * 8192)
/* An attached JPEG/PNG bigger than this is re-encoded rather than copied
 * into the tag as it is. */
#define COPY_BYTES_MAX (8 * 1024 * 1024)
/* Video packets read looking for one frame (cover.h), and packets of any
 * stream, for demuxers that return discarded streams' packets anyway. */
#define VIDEO_PACKETS_MAX 64
#define READS_MAX 4096
#define JPEG_QSCALE 3

struct source {
    const struct transcode_input *in;
    int (*stop)(void *cls); /* cover_extract's; may be NULL */
    void *stop_cls;
    bool failed;  /* a callback reported an error: the answer is TRANSCODE_EIO */
    bool stopped; /* stop said so: the answer is TRANSCODE_ECANCELED (sticky) */
};

/* Whether the caller asked to stop; also libavformat's interrupt callback. */
static int should_stop(void *opaque)
{
    struct source *s = opaque;
    if (!s->stopped && s->stop != NULL && s->stop(s->stop_cls) != 0)
        s->stopped = true;
    return s->stopped;
}

static int io_read(void *opaque, uint8_t *buf, int size)
{
    struct source *s = opaque;
    if (s->failed)
        return AVERROR(EIO);
    if (should_stop(s))
        return AVERROR_EXIT;
    long n = s->in->read(s->in->cls, buf, (size_t)size);
    if (n < 0 || n > size) {
        s->failed = true;
        return AVERROR(EIO);
    }
    return n == 0 ? AVERROR_EOF : (int)n;
}

/* A failed seek is not recorded as an input failure: a hostile file can
 * make the demuxer seek past the end, and the reads that matter fail on
 * their own when the storage is down. */
static int64_t io_seek(void *opaque, int64_t offset, int whence)
{
    struct source *s = opaque;
    if (s->failed)
        return AVERROR(EIO);
    whence &= ~AVSEEK_FORCE;
    int64_t r;
    if (whence == AVSEEK_SIZE)
        r = s->in->seek(s->in->cls, 0, TRANSCODE_SEEK_SIZE);
    else if (whence == SEEK_SET || whence == SEEK_CUR || whence == SEEK_END)
        r = s->in->seek(s->in->cls, offset, whence);
    else
        return AVERROR(EINVAL);
    return r < 0 ? AVERROR(EIO) : r;
}

/* No demuxer opens another file or URL, whatever the input names. */
static int refuse_open(AVFormatContext *fmt, AVIOContext **pb, const char *url, int flags,
                       AVDictionary **options)
{
    (void)fmt;
    (void)pb;
    (void)url;
    (void)flags;
    (void)options;
    return AVERROR(EPERM);
}

static void close_input(AVFormatContext **fmt, AVIOContext **pb)
{
    avformat_close_input(fmt); /* leaves a custom pb alone */
    if (*pb != NULL) {
        av_freep(&(*pb)->buffer); /* the demuxer may have replaced it */
        avio_context_free(pb);
    }
}

/*
 * The demuxer for the input when the caller gave none: libavformat's
 * probe of the first bytes (each demuxer's read_probe looks at a buffer;
 * none parses the file), at the gateway's threshold (probe.c), then the
 * allow-list. NULL when the input is not one of its media containers.
 * pb is left at the start, the probed bytes kept in its buffer.
 */
static const AVInputFormat *probe_input(AVIOContext *pb)
{
    const AVInputFormat *fmt = NULL;
    int score = av_probe_input_buffer2(pb, &fmt, "", NULL, 0, PROBE_BYTES_MAX);
    if (score < AVPROBE_SCORE_MAX / 4 || fmt == NULL || !probe_format_allowed(fmt->name))
        return NULL;
    return fmt;
}

/* Options for avformat_find_stream_info, one dictionary per stream (caller
 * frees with free_stream_options): its probing decoders refuse frames
 * larger than PIXELS_MAX too. NULL when out of memory. */
static AVDictionary **stream_options(const AVFormatContext *f)
{
    AVDictionary **opts = av_calloc(f->nb_streams > 0 ? f->nb_streams : 1, sizeof(*opts));
    if (opts == NULL)
        return NULL;
    for (unsigned i = 0; i < f->nb_streams; i++) {
        if (av_dict_set_int(&opts[i], "max_pixels", PIXELS_MAX, 0) < 0) {
            for (unsigned j = 0; j <= i; j++)
                av_dict_free(&opts[j]);
            av_free(opts);
            return NULL;
        }
    }
    return opts;
}

static void free_stream_options(AVDictionary **opts, unsigned n)
{
    for (unsigned i = 0; opts != NULL && i < n; i++)
        av_dict_free(&opts[i]);
    av_free(opts);
}

/* Opens the demuxer iformat (NULL: probed here) over s and reads the
 * streams' parameters. Only a demuxer of the allow-list runs: iformat is
 * checked, or chosen by probe_input, before avformat_open_input reads the
 * header, and it is the only format nested demuxers may open. On return
 * *fmt and *pb are set or NULL, for close_input, whatever the result. */
static int open_input(struct source *s, const AVInputFormat *iformat, AVFormatContext **fmt,
                      AVIOContext **pb)
{
    *fmt = NULL;
    /* from the start, wherever the caller's probe left the source */
    if (s->in->seek != NULL && s->in->seek(s->in->cls, 0, SEEK_SET) < 0) {
        s->failed = true;
        return 0;
    }
    unsigned char *buf = av_malloc(IO_BUFFER_BYTES);
    if (buf == NULL)
        return TRANSCODE_ENOMEM;
    *pb = avio_alloc_context(buf, IO_BUFFER_BYTES, 0, s, io_read, NULL,
                             s->in->seek != NULL ? io_seek : NULL);
    if (*pb == NULL) {
        av_free(buf);
        return TRANSCODE_ENOMEM;
    }
    if (iformat == NULL)
        iformat = probe_input(*pb);
    /* the gateway's allow-list: a text file read as "tty" art is no cover,
     * and playlist demuxers (hls, concat) never see the bytes */
    if (iformat == NULL || !probe_format_allowed(iformat->name))
        return 0;
    AVFormatContext *f = avformat_alloc_context();
    if (f == NULL)
        return TRANSCODE_ENOMEM;
    f->pb = *pb;
    f->flags |= AVFMT_FLAG_CUSTOM_IO;
    f->io_open = refuse_open;
    f->interrupt_callback = (AVIOInterruptCB){should_stop, s};
    f->probesize = PROBE_BYTES_MAX;
    f->max_analyze_duration = ANALYZE_SECONDS_MAX * (int64_t)AV_TIME_BASE;
    if (av_opt_set(f, "protocol_whitelist", "", 0) < 0 ||
        av_opt_set(f, "format_whitelist", iformat->name, 0) < 0) {
        avformat_free_context(f);
        return TRANSCODE_ENOMEM;
    }
    if (avformat_open_input(&f, "", iformat, NULL) < 0)
        return 0; /* it freed f */
    *fmt = f;
    unsigned n = f->nb_streams;
    AVDictionary **opts = stream_options(f);
    if (opts == NULL)
        return TRANSCODE_ENOMEM;
    int rc = avformat_find_stream_info(f, opts);
    free_stream_options(opts, n);
    return rc < 0 ? 0 : 1;
}

/* A decoder for st, one thread (the caller's CPU time is what the
 * converter limits), refusing frames larger than PIXELS_MAX. */
static int open_decoder(const AVStream *st, AVCodecContext **out)
{
    const AVCodecParameters *par = st->codecpar;
    *out = NULL;
    if (par->width > SIDE_MAX || par->height > SIDE_MAX)
        return 0;
    const AVCodec *codec = avcodec_find_decoder(par->codec_id);
    if (codec == NULL)
        return 0;
    AVCodecContext *dec = avcodec_alloc_context3(codec);
    if (dec == NULL)
        return TRANSCODE_ENOMEM;
    *out = dec;
    if (avcodec_parameters_to_context(dec, par) < 0)
        return 0;
    dec->thread_count = 1;
    dec->max_pixels = PIXELS_MAX;
    dec->pkt_timebase = st->time_base;
    return avcodec_open2(dec, codec, NULL) < 0 ? 0 : 1;
}

/* The J formats are the plain ones at full range; swscale warns about them. */
static enum AVPixelFormat plain_format(enum AVPixelFormat f, bool *full)
{
    switch (f) {
    case AV_PIX_FMT_YUVJ420P:
        *full = true;
        return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P:
        *full = true;
        return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P:
        *full = true;
        return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P:
        *full = true;
        return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P:
        *full = true;
        return AV_PIX_FMT_YUV411P;
    default:
        return f;
    }
}

/* The JPEG's size: the frame as displayed (sar applied when it is sane),
 * its longer side at most COVER_MAX_SIDE, never enlarged, even. */
static void scaled_size(int w, int h, AVRational sar, int *ow, int *oh)
{
    double r = 1.0;
    if (sar.num > 0 && sar.den > 0) {
        r = (double)sar.num / sar.den;
        if (r < 0.1 || r > 10.0)
            r = 1.0;
    }
    double dw = w * r, dh = h;
    double longer = dw > dh ? dw : dh;
    double k = longer > COVER_MAX_SIDE ? COVER_MAX_SIDE / longer : 1.0;
    long x = (long)(dw * k + 0.5) & ~1L, y = (long)(dh * k + 0.5) & ~1L;
    *ow = x < 2 ? 2 : (int)x;
    *oh = y < 2 ? 2 : (int)y;
}

/* src scaled into a new full-range YUV 4:2:0 frame (*out, caller frees). */
static int scale_frame(const AVFrame *src, AVRational sar, AVFrame **out)
{
    *out = NULL;
    bool src_full = src->color_range == AVCOL_RANGE_JPEG;
    enum AVPixelFormat fmt = plain_format(src->format, &src_full);
    const AVPixFmtDescriptor *desc = av_pix_fmt_desc_get(fmt);
    if (desc == NULL || !sws_isSupportedInput(fmt))
        return 0;
    if (desc->flags & AV_PIX_FMT_FLAG_RGB)
        src_full = false; /* range is a YUV matter */
    int w, h;
    scaled_size(src->width, src->height, sar, &w, &h);
    struct SwsContext *sws = sws_getContext(src->width, src->height, fmt, w, h, AV_PIX_FMT_YUV420P,
                                            SWS_BICUBIC, NULL, NULL, NULL);
    if (sws == NULL)
        return 0;
    int rc = 0;
    /* JPEG is BT.601 at full range; the source may be BT.709, limited. */
    sws_setColorspaceDetails(sws, sws_getCoefficients(src->colorspace), src_full,
                             sws_getCoefficients(SWS_CS_ITU601), 1, 0, 1 << 16, 1 << 16);
    AVFrame *dst = av_frame_alloc();
    if (dst == NULL) {
        rc = TRANSCODE_ENOMEM;
        goto out;
    }
    dst->format = AV_PIX_FMT_YUV420P;
    dst->width = w;
    dst->height = h;
    dst->color_range = AVCOL_RANGE_JPEG;
    dst->colorspace = AVCOL_SPC_BT470BG;
    if (av_frame_get_buffer(dst, 0) < 0) {
        rc = TRANSCODE_ENOMEM;
        goto out;
    }
    if (sws_scale(sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height, dst->data,
                  dst->linesize) != h)
        goto out;
    *out = dst;
    dst = NULL;
    rc = 1;
out:
    av_frame_free(&dst);
    sws_freeContext(sws);
    return rc;
}

static int copy_out(const void *data, size_t len, const char *mime, int w, int h, struct cover *out)
{
    out->data = malloc(len);
    if (out->data == NULL)
        return TRANSCODE_ENOMEM;
    memcpy(out->data, data, len);
    out->len = len;
    out->mime = mime;
    out->width = w;
    out->height = h;
    return 1;
}

/* frame as a JPEG of at most COVER_MAX_SIDE px into *out. */
static int encode_jpeg(const AVFrame *frame, AVRational sar, struct cover *out)
{
    if (frame->width <= 0 || frame->height <= 0 || frame->width > SIDE_MAX ||
        frame->height > SIDE_MAX)
        return 0;
    const AVCodec *codec = avcodec_find_encoder_by_name("mjpeg");
    if (codec == NULL)
        return 0;
    AVFrame *pic = NULL;
    AVPacket *pkt = NULL;
    AVCodecContext *enc = NULL;
    int rc = scale_frame(frame, sar, &pic);
    if (rc != 1)
        goto out;
    rc = TRANSCODE_ENOMEM;
    enc = avcodec_alloc_context3(codec);
    pkt = av_packet_alloc();
    if (enc == NULL || pkt == NULL)
        goto out;
    rc = 0;
    enc->width = pic->width;
    enc->height = pic->height;
    enc->pix_fmt = AV_PIX_FMT_YUV420P; /* at full range: baseline JPEG */
    enc->color_range = AVCOL_RANGE_JPEG;
    enc->colorspace = AVCOL_SPC_BT470BG;
    enc->sample_aspect_ratio = (AVRational){1, 1};
    enc->time_base = (AVRational){1, 25};
    enc->thread_count = 1;
    enc->flags |= AV_CODEC_FLAG_QSCALE;
    enc->global_quality = JPEG_QSCALE * FF_QP2LAMBDA;
    if (avcodec_open2(enc, codec, NULL) < 0)
        goto out;
    pic->pts = 0;
    pic->quality = enc->global_quality;
    if (avcodec_send_frame(enc, pic) < 0 || avcodec_send_frame(enc, NULL) < 0 ||
        avcodec_receive_packet(enc, pkt) < 0 || pkt->size <= 0)
        goto out;
    rc = copy_out(pkt->data, (size_t)pkt->size, "image/jpeg", pic->width, pic->height, out);
out:
    av_packet_free(&pkt);
    avcodec_free_context(&enc);
    av_frame_free(&pic);
    return rc;
}

/* The one picture in an attached-picture packet, into frame. */
static int decode_packet(const AVStream *st, const AVPacket *pkt, AVFrame *frame)
{
    AVCodecContext *dec = NULL;
    int rc = open_decoder(st, &dec);
    if (rc == 1) {
        rc = avcodec_send_packet(dec, pkt) >= 0 && avcodec_send_packet(dec, NULL) >= 0 &&
             avcodec_receive_frame(dec, frame) >= 0;
    }
    avcodec_free_context(&dec);
    return rc;
}

/* st's attached picture: as it is when JPEG or PNG, else re-encoded. */
static int attached_picture(const AVStream *st, struct cover *out)
{
    const AVPacket *pic = &st->attached_pic;
    enum AVCodecID id = st->codecpar->codec_id;
    const char *mime = id == AV_CODEC_ID_MJPEG ? "image/jpeg"
                       : id == AV_CODEC_ID_PNG ? "image/png"
                                               : NULL;
    bool as_is = mime != NULL && pic->size <= COPY_BYTES_MAX;
    int w = st->codecpar->width, h = st->codecpar->height;
    AVFrame *frame = NULL;
    int rc = 0;
    if (!as_is || w <= 0 || h <= 0) {
        frame = av_frame_alloc();
        if (frame == NULL)
            return TRANSCODE_ENOMEM;
        rc = decode_packet(st, pic, frame);
        if (rc != 1)
            goto out;
        rc = 0;
        w = frame->width;
        h = frame->height;
    }
    if (w <= 0 || h <= 0 || w > SIDE_MAX || h > SIDE_MAX)
        goto out;
    if (as_is)
        rc = copy_out(pic->data, (size_t)pic->size, mime, w, h, out);
    else
        rc = encode_jpeg(frame, frame->sample_aspect_ratio, out);
out:
    av_frame_free(&frame);
    return rc;
}

static int from_attached(const AVFormatContext *fmt, struct cover *out)
{
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        const AVStream *st = fmt->streams[i];
        if (st->codecpar->codec_type != AVMEDIA_TYPE_VIDEO ||
            !(st->disposition & AV_DISPOSITION_ATTACHED_PIC) || st->attached_pic.size <= 0)
            continue;
        int rc = attached_picture(st, out);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The video stream to take a frame of: the default one, else the first. */
static AVStream *pick_video(const AVFormatContext *fmt)
{
    AVStream *first = NULL;
    for (unsigned i = 0; i < fmt->nb_streams; i++) {
        AVStream *st = fmt->streams[i];
        if (st->codecpar->codec_type != AVMEDIA_TYPE_VIDEO ||
            (st->disposition & AV_DISPOSITION_ATTACHED_PIC) ||
            avcodec_find_decoder(st->codecpar->codec_id) == NULL)
            continue;
        if (st->disposition & AV_DISPOSITION_DEFAULT)
            return st;
        if (first == NULL)
            first = st;
    }
    return first;
}

/* To the keyframe at or before 10% of the duration. When the duration is
 * unknown, or the seek fails, reading goes on from the start. */
static void seek_in(AVFormatContext *fmt, const AVStream *st)
{
    if (fmt->duration == AV_NOPTS_VALUE || fmt->duration <= 0)
        return;
    int64_t start = fmt->start_time != AV_NOPTS_VALUE ? fmt->start_time : 0;
    int64_t ts = av_rescale_q(start + fmt->duration / 10, AV_TIME_BASE_Q, st->time_base);
    avformat_seek_file(fmt, st->index, INT64_MIN, ts, ts, 0);
}

/*
 * The first frame of st decoded from where the demuxer is, within
 * VIDEO_PACKETS_MAX packets. Packets before the first keyframe are
 * skipped (they decode to grey or broken pictures) unless the first half
 * of the budget has none, as in intra-refresh streams.
 */
static int decode_frame(struct source *s, AVFormatContext *fmt, const AVStream *st,
                        AVCodecContext *dec, AVPacket *pkt, AVFrame *frame)
{
    int seen = 0, reads = 0;
    bool started = false;
    while (seen < VIDEO_PACKETS_MAX && reads++ < READS_MAX && !should_stop(s)) {
        int r = av_read_frame(fmt, pkt);
        if (r == AVERROR(EAGAIN))
            continue;
        if (r < 0)
            break;
        if (pkt->stream_index != st->index) {
            av_packet_unref(pkt);
            continue;
        }
        seen++;
        if (!started && !(pkt->flags & AV_PKT_FLAG_KEY) && seen <= VIDEO_PACKETS_MAX / 2) {
            av_packet_unref(pkt);
            continue;
        }
        started = true;
        r = avcodec_send_packet(dec, pkt);
        av_packet_unref(pkt);
        if (r < 0)
            continue; /* a broken packet: the next may do */
        if (avcodec_receive_frame(dec, frame) == 0)
            return 1;
    }
    /* the decoder may hold back frames (B-frame delay) until drained */
    if (started && !s->stopped && avcodec_send_packet(dec, NULL) >= 0 &&
        avcodec_receive_frame(dec, frame) == 0)
        return 1;
    return 0;
}

static int from_video(struct source *s, AVFormatContext *fmt, struct cover *out)
{
    AVStream *st = pick_video(fmt);
    if (st == NULL)
        return 0;
    for (unsigned i = 0; i < fmt->nb_streams; i++)
        fmt->streams[i]->discard = fmt->streams[i] == st ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    AVCodecContext *dec = NULL;
    AVFrame *frame = NULL;
    AVPacket *pkt = NULL;
    int rc = open_decoder(st, &dec);
    if (rc != 1)
        goto out;
    rc = TRANSCODE_ENOMEM;
    frame = av_frame_alloc();
    pkt = av_packet_alloc();
    if (frame == NULL || pkt == NULL)
        goto out;
    seek_in(fmt, st);
    rc = decode_frame(s, fmt, st, dec, pkt, frame);
    if (rc == 1)
        rc = encode_jpeg(frame, av_guess_sample_aspect_ratio(fmt, st, frame), out);
out:
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&dec);
    return rc;
}

int cover_extract(const struct transcode_input *in, const struct AVInputFormat *format,
                  int (*stop)(void *cls), void *stop_cls, struct cover *out)
{
    memset(out, 0, sizeof(*out));
    if (in == NULL || in->read == NULL)
        return TRANSCODE_EIO;
    struct source s = {.in = in, .stop = stop, .stop_cls = stop_cls};
    AVFormatContext *fmt = NULL;
    AVIOContext *pb = NULL;
    int rc = open_input(&s, format, &fmt, &pb);
    if (rc == 1) {
        rc = from_attached(fmt, out);
        if (rc == 0)
            rc = from_video(&s, fmt, out);
    }
    close_input(&fmt, &pb);
    if (s.stopped) {
        cover_free(out);
        rc = TRANSCODE_ECANCELED;
    } else if (s.failed) {
        /* whatever came out of a source that failed may be a wrong frame */
        cover_free(out);
        rc = TRANSCODE_EIO;
    }
    return rc;
}

void cover_free(struct cover *c)
{
    if (c == NULL)
        return;
    free(c->data);
    memset(c, 0, sizeof(*c));
}
