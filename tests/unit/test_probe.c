/* Unit tests: gateway/probe. Every input is built here in memory, so the
 * tests need libavformat but no ffmpeg and no sample files. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/probe.h"

#define NAME_MAX_LEN 64

/* Large enough for every generated input; the tests never probe more than
 * PROBE_BYTES + 4096 bytes. */
#define BUF_MAX (PROBE_BYTES + 4096)

static unsigned char buf[BUF_MAX];

/* ---- helpers ---------------------------------------------------------- */

static void put_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_le32(unsigned char *p, uint32_t v)
{
    put_le16(p, (uint16_t)v);
    put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* xorshift64*: the same bytes on every libc, unlike rand(). */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* CRC-32 as in zlib and PNG (reflected, polynomial 0xEDB88320). */
static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

/* CRC-32/MPEG-2 of PSI sections (not reflected, no final xor). */
static uint32_t crc32_mpeg(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= (uint32_t)p[i] << 24;
        for (int k = 0; k < 8; k++)
            c = (c << 1) ^ (0x04C11DB7u & (0u - (c >> 31)));
    }
    return c;
}

/* Expects probe_media to refuse len bytes of buf and to leave name alone. */
static void refused(const unsigned char *in, size_t len, const char *what)
{
    char name[NAME_MAX_LEN] = "untouched";
    int rc = probe_media(in, len, name, sizeof(name));
    if (rc != -1)
        print_error("%s (%zu bytes) was taken for \"%s\"\n", what, len, name);
    assert_int_equal(rc, -1);
    assert_string_equal(name, "untouched");
}

static void refused_text(const char *text)
{
    refused((const unsigned char *)text, strlen(text), text);
}

/* Expects probe_media to accept len bytes of buf as the format want. */
static void accepted(const unsigned char *in, size_t len, const char *want)
{
    char name[NAME_MAX_LEN] = "";
    int rc = probe_media(in, len, name, sizeof(name));
    if (rc != 0)
        print_error("%s sample (%zu bytes) was refused\n", want, len);
    assert_int_equal(rc, 0);
    assert_string_equal(name, want);
}

/* ---- media built in memory -------------------------------------------- */

/* A PCM WAV file: 16-bit mono at 8 kHz, a sawtooth of samples samples. */
static size_t make_wav(unsigned char *out, size_t samples)
{
    size_t data = samples * 2;
    memcpy(out, "RIFF", 4);
    put_le32(out + 4, (uint32_t)(36 + data));
    memcpy(out + 8, "WAVEfmt ", 8);
    put_le32(out + 16, 16);
    put_le16(out + 20, 1); /* PCM */
    put_le16(out + 22, 1); /* channels */
    put_le32(out + 24, 8000);
    put_le32(out + 28, 8000 * 2);
    put_le16(out + 32, 2); /* block align */
    put_le16(out + 34, 16);
    memcpy(out + 36, "data", 4);
    put_le32(out + 40, (uint32_t)data);
    for (size_t i = 0; i < samples; i++)
        put_le16(out + 44 + 2 * i, (uint16_t)((i * 1024) & 0xFFFF));
    return 44 + data;
}

/* MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, joint stereo, no CRC, no padding:
 * each frame is 144 * 128000 / 44100 = 417 bytes, header then zeros. */
#define MP3_HEADER 0xFFFB9064u
#define MP3_FRAME 417

static size_t make_mp3(unsigned char *out, int frames)
{
    memset(out, 0, (size_t)frames * MP3_FRAME);
    for (int i = 0; i < frames; i++)
        put_be32(out + (size_t)i * MP3_FRAME, MP3_HEADER);
    return (size_t)frames * MP3_FRAME;
}

/* MPEG-TS: packets of 188 bytes, a PAT (program 1, PMT on PID 0x1000)
 * every tenth packet and null packets between. */
#define TS_PACKET 188

static size_t make_ts(unsigned char *out, int packets)
{
    unsigned pat_cc = 0;
    for (int i = 0; i < packets; i++) {
        unsigned char *p = out + (size_t)i * TS_PACKET;
        memset(p, 0xFF, TS_PACKET);
        p[0] = 0x47;
        if (i % 10 == 0) {
            p[1] = 0x40; /* payload unit start, PID 0 */
            p[2] = 0x00;
            p[3] = (unsigned char)(0x10 | (pat_cc++ & 0x0F));
            p[4] = 0x00; /* pointer field */
            unsigned char *s = p + 5;
            static const unsigned char pat[] = {
                0x00,       /* table id: PAT */
                0xB0, 0x0D, /* section syntax, length 13 */
                0x00, 0x01, /* transport stream id */
                0xC1,       /* version 0, current */
                0x00, 0x00, /* section 0 of 0 */
                0x00, 0x01, /* program 1 */
                0xF0, 0x00, /* PMT PID 0x1000 */
            };
            memcpy(s, pat, sizeof(pat));
            put_be32(s + sizeof(pat), crc32_mpeg(s, sizeof(pat)));
        } else {
            p[1] = 0x1F; /* null packet: PID 0x1FFF */
            p[2] = 0xFF;
            p[3] = 0x10;
        }
    }
    return (size_t)packets * TS_PACKET;
}

/* A PNG signature and its IHDR chunk (1x1 RGBA): an image, nothing more. */
static size_t make_png(unsigned char *out)
{
    static const unsigned char sig[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    memcpy(out, sig, sizeof(sig));
    unsigned char *c = out + sizeof(sig);
    put_be32(c, 13);
    memcpy(c + 4, "IHDR", 4);
    put_be32(c + 8, 1);  /* width */
    put_be32(c + 12, 1); /* height */
    c[16] = 8;           /* bit depth */
    c[17] = 6;           /* RGBA */
    c[18] = c[19] = c[20] = 0;
    put_be32(c + 21, crc32_png(c + 4, 17));
    return sizeof(sig) + 25;
}

/* ---- tests ------------------------------------------------------------ */

static void nothing(void **state)
{
    (void)state;
    refused(buf, 0, "empty buffer");
    static const unsigned char zeros[4096];
    refused(zeros, 1, "one zero byte");
    refused(zeros, sizeof(zeros), "zeros");
}

static void text(void **state)
{
    (void)state;
    refused_text("hello");
    refused_text("Hello, world.\nThis is a plain text file, nothing to convert.\n");
    refused_text("<!DOCTYPE html>\n<html><head><title>x</title></head>\n"
                 "<body><p>not a video</p><video src=\"a.mp4\"></video></body></html>\n");
    refused_text("{\"name\": \"clip.mp4\", \"size\": 1234, \"tags\": [\"a\", \"b\"]}\n");
    refused_text("[1, 2, 3]");
    refused_text("<?xml version=\"1.0\"?>\n<root><item/></root>\n");
    refused_text("#!/bin/sh\necho hello\n");
    refused_text("#EXTM3U\n#EXTINF:123,Artist - Title\nsong.mp3\n");
    /* Long text: more than the probe looks at. */
    size_t n = 0;
    while (n + 64 < BUF_MAX) {
        memcpy(buf + n, "All work and no play makes Jack a dull boy. 0123456789 abcdefgh\n", 64);
        n += 64;
    }
    refused(buf, n, "long text");
}

static void random_bytes(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 2, 3, 4, 8, 16, 100, 188, 512, 1000, 4096, 65536, BUF_MAX};
    for (uint64_t seed = 1; seed <= 8; seed++) {
        uint64_t s = seed * UINT64_C(0x9E3779B97F4A7C15);
        for (size_t i = 0; i < BUF_MAX; i++)
            buf[i] = (unsigned char)(next_random(&s) >> 56);
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
            refused(buf, sizes[k], "random bytes");
    }
}

static void image(void **state)
{
    (void)state;
    size_t n = make_png(buf);
    refused(buf, n, "PNG signature and IHDR");
    /* Followed by an IDAT chunk start and zeros. */
    put_be32(buf + n, 10);
    memcpy(buf + n + 4, "IDAT", 4);
    memset(buf + n + 8, 0, 14);
    refused(buf, n + 22, "PNG with IDAT");
    refused_text("<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                 "width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\"/></svg>\n");
    refused_text("P1\n2 2\n0 1\n1 0\n");
    refused_text("/* XPM */\nstatic char *x[] = {\"1 1 1 1\", \"a c #000000\", \"a\"};\n");
}

static void gif_image(void **state)
{
    (void)state;
    static const unsigned char gif[] = {
        'G',  'I',  'F',  '8',  '9',  'a',  0x01, 0x00, 0x01, 0x00, 0x80, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0x2C, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
    };
    refused(gif, sizeof(gif), "GIF");
}

static void icon_image(void **state)
{
    (void)state;
    static const unsigned char ico[] = {
        0x00, 0x00, 0x01, 0x00, 0x01, 0x00,             /* icon, one image */
        0x10, 0x10, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00, /* 16x16, 32 bpp */
        0x68, 0x04, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, /* size, offset */
    };
    refused(ico, sizeof(ico), "ICO");
}

static void animated_png(void **state)
{
    (void)state;
    size_t n = make_png(buf);
    unsigned char *c = buf + n;
    put_be32(c, 8);
    memcpy(c + 4, "acTL", 4);
    put_be32(c + 8, 1);  /* frames */
    put_be32(c + 12, 0); /* plays */
    put_be32(c + 16, crc32_png(c + 4, 12));
    c += 20;
    put_be32(c, 10);
    memcpy(c + 4, "IDAT", 4);
    memset(c + 8, 0, 14);
    refused(buf, (size_t)(c + 22 - buf), "APNG");
}

static void other_images(void **state)
{
    (void)state;
    static const char fits[] = "SIMPLE  =                    T / conforms to FITS standard"
                               "                      BITPIX  =                    8";
    refused((const unsigned char *)fits, sizeof(fits) - 1, "FITS");
    static const unsigned char xbin[] = {'X',  'B',  'I',  'N',  0x1A, 0x50,
                                         0x00, 0x19, 0x00, 0x10, 0x00};
    refused(xbin, sizeof(xbin), "XBIN text art");
    static const unsigned char idf[] = {0x04, '1', '.', '4', 0, 0, 0, 0, 0x4F, 0x00, 0x15, 0x00};
    refused(idf, sizeof(idf), "iCE Draw text art");
}

static void subtitles(void **state)
{
    (void)state;
    refused_text("1\n00:00:01,000 --> 00:00:02,500\nHello\n\n"
                 "2\n00:00:03,000 --> 00:00:04,000\nWorld\n\n");
    refused_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello\n\n"
                 "00:00:03.000 --> 00:00:04.000\nWorld\n");
    refused_text("[Script Info]\nScriptType: v4.00+\n\n[Events]\n"
                 "Format: Layer, Start, End, Style, Text\n"
                 "Dialogue: 0,0:00:01.00,0:00:02.00,Default,Hello\n");
    refused_text("{10}{20}Hello\n{30}{40}World\n");
    refused_text("[00:01.00]Hello\n[00:02.00]World\n");
    refused_text("FORMAT=TIME\n\n1 2\nHello\n\n3 1\nWorld\n");
    refused_text("-->> 000001\nHello\n\n-->> 000050\n\n-->> 000100\nWorld\n");
    refused_text("# VobSub index file, v7 (do not modify this line!)\nsize: 720x576\n");
    refused_text("{\"captions\":[{\"duration\":3000,\"content\":\"Hello\","
                 "\"startOfParagraph\":true,\"startTime\":0}]}");
    refused_text("<SAMI><HEAD><TITLE>x</TITLE></HEAD><BODY>"
                 "<SYNC Start=1000><P>Hello</SYNC></BODY></SAMI>\n");
}

/* Text that libavformat reads as a recipe for other files or network
 * streams: never media of its own, and not to be opened by the converter. */
static void scripts_and_playlists(void **state)
{
    (void)state;
    refused_text("ffconcat version 1.0\nfile /etc/passwd\n");
    refused_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
                 "http://127.0.0.1/a.ts\n#EXT-X-ENDLIST\n");
    refused_text("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" "
                 "profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"></MPD>\n");
    refused_text("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
                 "m=audio 5004 RTP/AVP 0\n");
    refused_text(";FFMETADATA1\ntitle=x\nartist=y\n");
    refused_text("-SE\na: 300+2.5/10\nNOW a\n");
}

static void wav(void **state)
{
    (void)state;
    accepted(buf, make_wav(buf, 800), "wav");
    accepted(buf, make_wav(buf, 1), "wav");
    /* A WAV larger than the probe reads: only its start counts. */
    accepted(buf, make_wav(buf, (BUF_MAX - 44) / 2), "wav");
}

static void mp3(void **state)
{
    (void)state;
    accepted(buf, make_mp3(buf, 10), "mp3");
    accepted(buf, make_mp3(buf, (int)(BUF_MAX / MP3_FRAME)), "mp3");
}

static void mpegts(void **state)
{
    (void)state;
    accepted(buf, make_ts(buf, 40), "mpegts");
    accepted(buf, make_ts(buf, (int)(BUF_MAX / TS_PACKET)), "mpegts");
    /* Sync bytes in the wrong places: not a transport stream. */
    size_t n = make_ts(buf, 40);
    for (size_t i = 0; i < n; i += TS_PACKET)
        buf[i] = 0x00;
    refused(buf, n, "TS packets without sync bytes");
}

static void mp4(void **state)
{
    (void)state;
    /* "....ftypisom....": the start of an ftyp box, nothing after it. */
    static const unsigned char ftyp[] = {
        0x00, 0x00, 0x00, 0x10, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0x00, 0x00, 0x02, 0x00,
    };
    accepted(ftyp, sizeof(ftyp), "mov,mp4,m4a,3gp,3g2,mj2");
    /* A fuller start: ftyp with compatible brands, then an mdat header. */
    static const unsigned char m4a[] = {
        0x00, 0x00, 0x00, 0x20, 'f',  't',  'y',  'p',  'M', '4', 'A', ' ', 0x00, 0x00,
        0x02, 0x00, 'M',  '4',  'A',  ' ',  'm',  'p',  '4', '2', 'i', 's', 'o',  'm',
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 'm', 'd', 'a', 't',
    };
    accepted(m4a, sizeof(m4a), "mov,mp4,m4a,3gp,3g2,mj2");
}

static void name_is_truncated_to_its_buffer(void **state)
{
    (void)state;
    size_t n = make_wav(buf, 100);
    char name[3] = {'x', 'x', 'x'};
    assert_int_equal(probe_media(buf, n, name, sizeof(name)), 0);
    assert_string_equal(name, "wa");
    char big[NAME_MAX_LEN];
    memset(big, 'x', sizeof(big));
    static const unsigned char ftyp[] = {
        0x00, 0x00, 0x00, 0x10, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0x00, 0x00, 0x02, 0x00,
    };
    assert_int_equal(probe_media(ftyp, sizeof(ftyp), big, 4), 0);
    assert_string_equal(big, "mov");
    assert_int_equal(big[4], 'x');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing),
        cmocka_unit_test(text),
        cmocka_unit_test(random_bytes),
        cmocka_unit_test(image),
        cmocka_unit_test(gif_image),
        cmocka_unit_test(icon_image),
        cmocka_unit_test(animated_png),
        cmocka_unit_test(other_images),
        cmocka_unit_test(subtitles),
        cmocka_unit_test(scripts_and_playlists),
        cmocka_unit_test(wav),
        cmocka_unit_test(mp3),
        cmocka_unit_test(mpegts),
        cmocka_unit_test(mp4),
        cmocka_unit_test(name_is_truncated_to_its_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
