/* segments: see segments.h. */
#include "converter/segments.h"

#include "converter/mp3splice.h"
#include "core/log.h"

#include <libavutil/samplefmt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MPEG1_FRAME 1152 /* samples; MPEG-2 and 2.5 frames (rates to 24 kHz) have 576 */
#define POST_ROLL (SEGMENT_ROLL_FRAMES * MPEG1_FRAME)

enum seg_state { SEG_QUEUED, SEG_ENCODING, SEG_DONE };

/* One segment: its PCM is [pre-roll | own span | post-roll]. */
struct seg {
    int64_t first_sample; /* the stream's sample at pcm[0] */
    int pre;              /* pre-roll samples: 0 for the first segment */
    int own;              /* samples of its own span */
    int post;             /* post-roll samples */
    bool last;
    uint8_t **pcm; /* owned; back to the pool once encoded */
    enum seg_state state;
    AVPacket **pkts; /* the encoder's frames, in order; owned */
    int npkts, pkts_cap;
    int err; /* 0, an AVERROR or SEGMENTS_ECANCELED */
};

struct segments {
    struct segments_config c;
    int fs;       /* samples per MP3 frame */
    int span;     /* samples per segment's own span */
    int roll;     /* pre-roll samples */
    int cap;      /* samples a segment's PCM holds */
    int inflight; /* segments submitted, not yet spliced: at most this many */
    enum AVSampleFormat fmt;
    int planes, bps;

    pthread_mutex_t mu;
    pthread_cond_t work; /* a segment was queued, or stopping */
    pthread_cond_t done; /* a segment was encoded */
    pthread_t *threads;
    int nthreads;
    atomic_bool stopping;
    double cpu;
    char request_id[65]; /* the caller's, for the threads' log lines */

    struct seg **ring; /* submitted segments in order, `inflight` slots */
    int head, count;
    uint8_t ***pool; /* spare PCM buffers */
    int npool;

    /* on the caller's thread */
    struct seg *cur;  /* being filled */
    struct seg *prev; /* filled, waiting for its post-roll */
    int64_t samples;  /* written so far */
    int nsegs;
    int error;
    struct mp3splice *splice;
    AVPacket **kept; /* the kept frames' packets, waiting for the splice */
    int kept_head, kept_count, kept_cap;
};

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool cancelled(const struct segments *s)
{
    return s->c.cancel != NULL && atomic_load(s->c.cancel) != 0;
}

/* ---- PCM buffers ------------------------------------------------------ */

static uint8_t **pcm_get(struct segments *s)
{
    pthread_mutex_lock(&s->mu);
    uint8_t **p = s->npool > 0 ? s->pool[--s->npool] : NULL;
    pthread_mutex_unlock(&s->mu);
    if (p == NULL &&
        av_samples_alloc_array_and_samples(&p, NULL, s->c.enc.channels, s->cap, s->fmt, 0) < 0)
        return NULL;
    return p;
}

static void pcm_free(uint8_t **p)
{
    if (p != NULL)
        av_freep(&p[0]);
    av_free(p);
}

/* Called with s->mu held. */
static void pcm_put_locked(struct segments *s, uint8_t **p)
{
    if (p == NULL)
        return;
    if (s->npool < s->inflight + 2)
        s->pool[s->npool++] = p;
    else
        pcm_free(p);
}

static void seg_free(struct seg *g)
{
    if (g == NULL)
        return;
    pcm_free(g->pcm);
    for (int i = 0; i < g->npkts; i++)
        av_packet_free(&g->pkts[i]);
    free(g->pkts);
    free(g);
}

/* ---- the encoder threads ---------------------------------------------- */

static int keep_packet(struct seg *g, AVPacket *p)
{
    if (g->npkts == g->pkts_cap) {
        int n = g->pkts_cap > 0 ? 2 * g->pkts_cap : 64;
        AVPacket **q = realloc(g->pkts, (size_t)n * sizeof(*q));
        if (q == NULL)
            return AVERROR(ENOMEM);
        g->pkts = q;
        g->pkts_cap = n;
    }
    AVPacket *k = av_packet_alloc();
    if (k == NULL)
        return AVERROR(ENOMEM);
    av_packet_move_ref(k, p);
    g->pkts[g->npkts++] = k;
    return 0;
}

static int drain(struct seg *g, AVCodecContext *e, AVPacket *p)
{
    for (;;) {
        int rc = avcodec_receive_packet(e, p);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0 || (rc = keep_packet(g, p)) < 0)
            return rc;
    }
}

/* Encodes g's PCM, frame by frame, then flushes the encoder. */
static int encode(struct segments *s, struct seg *g)
{
    if (cancelled(s) || atomic_load(&s->stopping))
        return SEGMENTS_ECANCELED; /* no encoder opened for nothing */
    int rc = 0;
    AVCodecContext *e = mp3enc_open(&s->c.enc, &rc);
    AVFrame *f = av_frame_alloc();
    AVPacket *p = av_packet_alloc();
    if (e == NULL || f == NULL || p == NULL) {
        rc = rc < 0 ? rc : AVERROR(ENOMEM);
        goto out;
    }
    f->format = s->fmt;
    f->sample_rate = s->c.enc.sample_rate;
    f->nb_samples = s->fs;
    if ((rc = av_channel_layout_copy(&f->ch_layout, &e->ch_layout)) < 0 ||
        (rc = av_frame_get_buffer(f, 0)) < 0)
        goto out;
    int total = g->pre + g->own + g->post;
    for (int off = 0; off < total; off += s->fs) {
        if (cancelled(s) || atomic_load(&s->stopping)) {
            rc = SEGMENTS_ECANCELED;
            goto out;
        }
        int n = total - off < s->fs ? total - off : s->fs;
        if ((rc = av_frame_make_writable(f)) < 0)
            goto out;
        for (int c = 0; c < s->planes; c++)
            memcpy(f->data[c], g->pcm[c] + (size_t)off * s->bps, (size_t)n * s->bps);
        f->nb_samples = n;
        f->pts = g->first_sample + off;
        if ((rc = avcodec_send_frame(e, f)) < 0 || (rc = drain(g, e, p)) < 0)
            goto out;
    }
    if ((rc = avcodec_send_frame(e, NULL)) < 0 || (rc = drain(g, e, p)) < 0)
        goto out;
out:
    av_packet_free(&p);
    av_frame_free(&f);
    avcodec_free_context(&e);
    return rc;
}

static void *worker(void *arg)
{
    struct segments *s = arg;
    log_set_request_id(s->request_id[0] != '\0' ? s->request_id : NULL);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        struct seg *g = NULL;
        for (int i = 0; i < s->count && g == NULL; i++) {
            struct seg *x = s->ring[(s->head + i) % s->inflight];
            if (x->state == SEG_QUEUED)
                g = x;
        }
        if (g == NULL) {
            if (atomic_load(&s->stopping))
                break;
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        g->state = SEG_ENCODING;
        pthread_mutex_unlock(&s->mu);
        double t0 = thread_cpu();
        int rc = encode(s, g);
        double used = thread_cpu() - t0;
        pthread_mutex_lock(&s->mu);
        g->err = rc;
        g->state = SEG_DONE;
        pcm_put_locked(s, g->pcm);
        g->pcm = NULL;
        s->cpu += used;
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the splice (caller's thread) ------------------------------------- */

static int kept_push(struct segments *s, AVPacket *p)
{
    if (s->kept_count == s->kept_cap) {
        int n = s->kept_cap > 0 ? 2 * s->kept_cap : 64;
        AVPacket **q = malloc((size_t)n * sizeof(*q));
        if (q == NULL)
            return SEGMENTS_ENOMEM;
        for (int i = 0; i < s->kept_count; i++)
            q[i] = s->kept[(s->kept_head + i) % s->kept_cap];
        free(s->kept);
        s->kept = q;
        s->kept_cap = n;
        s->kept_head = 0;
    }
    s->kept[(s->kept_head + s->kept_count) % s->kept_cap] = p;
    s->kept_count++;
    return 0;
}

/* Hands every frame the splice has finished to the sink, each with the
 * timestamps and side data of the encoder's packet it came from. */
static int emit(struct segments *s)
{
    const uint8_t *frame;
    size_t len;
    while (mp3splice_pop(s->splice, &frame, &len)) {
        if (s->kept_count == 0)
            return SEGMENTS_ESPLICE;
        AVPacket *src = s->kept[s->kept_head];
        s->kept_head = (s->kept_head + 1) % s->kept_cap;
        s->kept_count--;
        AVPacket *out = av_packet_alloc();
        int rc = out == NULL ? AVERROR(ENOMEM) : av_new_packet(out, (int)len);
        if (rc >= 0)
            rc = av_packet_copy_props(out, src);
        av_packet_free(&src);
        if (rc < 0) {
            av_packet_free(&out);
            return SEGMENTS_ENOMEM;
        }
        memcpy(out->data, frame, len);
        rc = s->c.sink(s->c.sink_cls, out);
        av_packet_free(&out);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Splices an encoded segment: its pre-roll frames carry data only; a
 * segment before the last keeps exactly its span's frames. */
static int splice(struct segments *s, struct seg *g)
{
    if (g->err == SEGMENTS_ECANCELED)
        return SEGMENTS_ECANCELED;
    if (g->err == AVERROR(ENOMEM))
        return SEGMENTS_ENOMEM;
    int pre_frames = g->pre / s->fs, own_frames = g->own / s->fs;
    if (g->err < 0 || (!g->last && g->npkts < pre_frames + own_frames))
        return SEGMENTS_EENCODER;
    mp3splice_begin_segment(s->splice);
    for (int i = 0; i < g->npkts; i++) {
        AVPacket *p = g->pkts[i];
        bool keep = i >= pre_frames && (g->last || i < pre_frames + own_frames);
        if (mp3splice_push(s->splice, p->data, (size_t)p->size, keep) != 0)
            return SEGMENTS_ESPLICE;
        if (keep) {
            int rc = kept_push(s, p);
            if (rc < 0)
                return rc;
            g->pkts[i] = NULL;
        }
        int rc = emit(s);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Splices the oldest submitted segment, waiting for it when wait is set;
 * 1 when there was none to splice. */
static int collect(struct segments *s, bool wait)
{
    pthread_mutex_lock(&s->mu);
    struct seg *g = s->count > 0 ? s->ring[s->head] : NULL;
    while (g != NULL && g->state != SEG_DONE && wait)
        pthread_cond_wait(&s->done, &s->mu);
    if (g == NULL || g->state != SEG_DONE) {
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    s->head = (s->head + 1) % s->inflight;
    s->count--;
    pthread_mutex_unlock(&s->mu);
    int rc = splice(s, g);
    for (int i = 0; i < g->npkts; i++)
        av_packet_free(&g->pkts[i]);
    seg_free(g);
    return rc;
}

/* Queues g for the threads, first making room by splicing finished ones. */
static int submit(struct segments *s, struct seg *g)
{
    int rc;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool room = s->count < s->inflight;
        pthread_mutex_unlock(&s->mu);
        if (room)
            break;
        if ((rc = collect(s, true)) < 0) {
            seg_free(g);
            return rc;
        }
    }
    pthread_mutex_lock(&s->mu);
    g->state = SEG_QUEUED;
    s->ring[(s->head + s->count) % s->inflight] = g;
    s->count++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    s->nsegs++;
    while ((rc = collect(s, false)) == 0)
        ;
    return rc < 0 ? rc : 0;
}

/* ---- writing ---------------------------------------------------------- */

static int copy_in(struct segments *s, uint8_t **dst, int at, const uint8_t *const *src, int from,
                   int n)
{
    for (int c = 0; c < s->planes; c++)
        memcpy(dst[c] + (size_t)at * s->bps, src[c] + (size_t)from * s->bps, (size_t)n * s->bps);
    return n;
}

/* A new segment after prev (which holds a whole span), its pre-roll
 * copied from the end of prev's span. */
static struct seg *seg_new(struct segments *s)
{
    struct seg *g = calloc(1, sizeof(*g));
    if (g == NULL || (g->pcm = pcm_get(s)) == NULL) {
        free(g);
        return NULL;
    }
    g->first_sample = s->samples;
    if (s->prev != NULL) {
        g->pre = s->roll;
        g->first_sample -= s->roll;
        int end = s->prev->pre + s->prev->own;
        copy_in(s, g->pcm, 0, (const uint8_t *const *)s->prev->pcm, end - s->roll, s->roll);
    }
    return g;
}

int segments_write(struct segments *s, const uint8_t *const *data, int nb_samples)
{
    if (s->error != 0)
        return s->error;
    if (cancelled(s))
        return s->error = SEGMENTS_ECANCELED;
    int done = 0;
    while (done < nb_samples) {
        if (s->cur == NULL && (s->cur = seg_new(s)) == NULL)
            return s->error = SEGMENTS_ENOMEM;
        struct seg *g = s->cur;
        int room = s->span - g->own, n = nb_samples - done < room ? nb_samples - done : room;
        copy_in(s, g->pcm, g->pre + g->own, data, done, n);
        g->own += n;
        struct seg *p = s->prev;
        if (p != NULL) {
            int m = POST_ROLL - p->post < n ? POST_ROLL - p->post : n;
            copy_in(s, p->pcm, p->pre + p->own + p->post, data, done, m);
            p->post += m;
            if (p->post == POST_ROLL) {
                s->prev = NULL;
                int rc = submit(s, p);
                if (rc < 0)
                    return s->error = rc;
            }
        }
        done += n;
        s->samples += n;
        if (g->own == s->span) {
            /* its post-roll comes from the next segment; p was submitted
             * (a span is longer than a roll) */
            s->prev = g;
            s->cur = NULL;
        }
    }
    return 0;
}

int segments_finish(struct segments *s)
{
    if (s->error != 0)
        return s->error;
    int rc;
    struct seg *p = s->prev, *g = s->cur;
    s->prev = s->cur = NULL;
    if (p != NULL) {
        p->last = g == NULL;
        if ((rc = submit(s, p)) < 0) {
            seg_free(g);
            return s->error = rc;
        }
    }
    if (g != NULL) {
        g->last = true;
        if ((rc = submit(s, g)) < 0)
            return s->error = rc;
    }
    while ((rc = collect(s, true)) == 0)
        ;
    if (rc < 0)
        return s->error = rc;
    mp3splice_finish(s->splice);
    if ((rc = emit(s)) < 0)
        return s->error = rc;
    return 0;
}

double segments_cpu_seconds(struct segments *s)
{
    pthread_mutex_lock(&s->mu);
    double c = s->cpu;
    pthread_mutex_unlock(&s->mu);
    return c;
}

int segments_preroll_frames(const struct mp3enc_settings *st)
{
    if (st->bitrate <= 0)
        return SEGMENT_ROLL_FRAMES;
    /* bits of 1152 samples (it holds back a tenth of them), and LAME's
     * reservoir bound: 8 * 256 bits per granule less 8, so 4088 bits for
     * MPEG-1 (2 granules), 2040 for MPEG-2 (1) */
    bool mpeg1 = st->sample_rate > 24000;
    int top = mpeg1 ? 320 : 160;
    if (st->sample_rate <= 0)
        return SEGMENT_ROLL_FRAMES;
    double bits = 1152.0 * (st->bitrate < top ? st->bitrate : top) * 1000 / st->sample_rate;
    double resv = mpeg1 ? 4088 : 2040;
    int fill = (int)(0.9 * resv / (0.1 * bits) + 0.999);
    int n = fill + SEGMENT_ROLL_FRAMES;
    return n < SEGMENT_ROLL_MAX_FRAMES ? n : SEGMENT_ROLL_MAX_FRAMES;
}

int segments_count(const struct segments *s)
{
    return s->nsegs;
}

long segments_raised(const struct segments *s)
{
    return mp3splice_raised(s->splice);
}

struct segments *segments_new(const struct segments_config *c)
{
    if (c->threads < 1 || c->sink == NULL || !av_sample_fmt_is_planar(c->enc.sample_fmt) ||
        c->enc.channels < 1 || c->enc.channels > 2 || c->enc.sample_rate <= 0)
        return NULL;
    struct segments *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->c = *c;
    snprintf(s->request_id, sizeof(s->request_id), "%s", log_request_id());
    s->fs = c->enc.sample_rate > 24000 ? MPEG1_FRAME : MPEG1_FRAME / 2;
    int roll_frames = segments_preroll_frames(&c->enc);
    int frames = c->segment_frames;
    if (frames <= 0) /* long enough that the pre-roll costs at most an eighth */
        frames =
            8 * roll_frames > SEGMENT_FRAMES_DEFAULT ? 8 * roll_frames : SEGMENT_FRAMES_DEFAULT;
    if (frames < SEGMENT_FRAMES_MIN)
        frames = SEGMENT_FRAMES_MIN;
    if (frames > SEGMENT_FRAMES_MAX)
        frames = SEGMENT_FRAMES_MAX;
    s->span = frames * MPEG1_FRAME;
    /* the pre-roll comes from the previous segment alone */
    s->roll = (roll_frames < frames ? roll_frames : frames) * MPEG1_FRAME;
    s->cap = s->roll + s->span + POST_ROLL;
    s->inflight = c->threads + 1;
    s->fmt = c->enc.sample_fmt;
    s->planes = c->enc.channels;
    s->bps = av_get_bytes_per_sample(s->fmt);
    s->ring = calloc((size_t)s->inflight, sizeof(*s->ring));
    s->pool = calloc((size_t)s->inflight + 2, sizeof(*s->pool));
    s->threads = calloc((size_t)c->threads, sizeof(*s->threads));
    s->splice = mp3splice_new();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->done, NULL);
    if (s->ring == NULL || s->pool == NULL || s->threads == NULL || s->splice == NULL) {
        segments_free(s);
        return NULL;
    }
    for (int i = 0; i < c->threads; i++) {
        if (pthread_create(&s->threads[i], NULL, worker, s) != 0) {
            segments_free(s);
            return NULL;
        }
        s->nthreads++;
    }
    return s;
}

void segments_free(struct segments *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stopping, true);
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    for (int i = 0; i < s->count; i++)
        seg_free(s->ring[(s->head + i) % s->inflight]);
    seg_free(s->cur);
    seg_free(s->prev);
    for (int i = 0; i < s->npool; i++)
        pcm_free(s->pool[i]);
    for (int i = 0; i < s->kept_count; i++)
        av_packet_free(&s->kept[(s->kept_head + i) % s->kept_cap]);
    free(s->kept);
    mp3splice_free(s->splice);
    free(s->ring);
    free(s->pool);
    free(s->threads);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
