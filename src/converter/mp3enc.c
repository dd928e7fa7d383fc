/* mp3enc: see mp3enc.h. */
#include "converter/mp3enc.h"

enum AVSampleFormat mp3enc_pick_format(enum AVSampleFormat in)
{
    const AVCodec *enc = avcodec_find_encoder_by_name("libmp3lame");
    const enum AVSampleFormat *f = enc != NULL ? enc->sample_fmts : NULL;
    if (f == NULL)
        return AV_SAMPLE_FMT_FLTP;
    enum AVSampleFormat want = av_get_planar_sample_fmt(in);
    if (want == AV_SAMPLE_FMT_U8P)
        want = AV_SAMPLE_FMT_S16P;
    else if (want == AV_SAMPLE_FMT_DBLP)
        want = AV_SAMPLE_FMT_FLTP;
    else if (want == AV_SAMPLE_FMT_S64P)
        want = AV_SAMPLE_FMT_S32P;
    for (int i = 0; f[i] != AV_SAMPLE_FMT_NONE; i++) {
        if (f[i] == want)
            return want;
    }
    for (int i = 0; f[i] != AV_SAMPLE_FMT_NONE; i++) {
        if (f[i] == AV_SAMPLE_FMT_FLTP)
            return AV_SAMPLE_FMT_FLTP;
    }
    return f[0];
}

AVCodecContext *mp3enc_open(const struct mp3enc_settings *st, int *averr)
{
    const AVCodec *codec = avcodec_find_encoder_by_name("libmp3lame");
    if (codec == NULL) {
        *averr = AVERROR_ENCODER_NOT_FOUND;
        return NULL;
    }
    AVCodecContext *e = avcodec_alloc_context3(codec);
    if (e == NULL) {
        *averr = AVERROR(ENOMEM);
        return NULL;
    }
    e->sample_fmt = st->sample_fmt;
    e->sample_rate = st->sample_rate;
    if (st->channels == 1)
        e->ch_layout = (AVChannelLayout)AV_CHANNEL_LAYOUT_MONO;
    else
        e->ch_layout = (AVChannelLayout)AV_CHANNEL_LAYOUT_STEREO;
    e->time_base = (AVRational){1, e->sample_rate};
    if (st->bitrate > 0) {
        /* LAME takes the nearest bitrate MP3 allows */
        e->bit_rate = (int64_t)(st->bitrate < 320 ? st->bitrate : 320) * 1000;
    } else {
        /* what `ffmpeg -q:a N` sets: LAME's VBR quality N */
        int q = st->quality < 0 ? 0 : st->quality > 9 ? 9 : st->quality;
        e->flags |= AV_CODEC_FLAG_QSCALE;
        e->global_quality = q * FF_QP2LAMBDA;
    }
    int rc = avcodec_open2(e, codec, NULL);
    if (rc < 0) {
        avcodec_free_context(&e);
        *averr = rc;
        return NULL;
    }
    return e;
}
