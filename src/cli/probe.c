/*
 * probe: `vid2mp3 probe [SERVICE] [--ready]`, the container health check.
 *
 * Asks the service running beside it, on this host, for /healthz (or
 * /readyz) on the port that service reads from the same environment, so a
 * HEALTHCHECK or an exec probe needs no curl in the image and never names a
 * port twice. Without SERVICE it asks the auth, gateway, converter and
 * notifier ports in turn; the first where something listens decides. Exit 0 when the answer is 200,
 * 1 otherwise (with the reason on stderr), 2 for a bad argument or setting.
 */
#include "cli/cli.h"

#include "core/config.h"
#include "core/service.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <string.h>

#define PROBE_TIMEOUT_MS 5000L

/* The port SERVICE listens on; -1 for an unknown name. `all` opens the auth
 * port last, once every part is up, so that is the one to ask. */
static long service_port(const struct config *cfg, const char *service)
{
    if (strcmp(service, "auth") == 0 || strcmp(service, "all") == 0)
        return cfg->auth_port;
    if (strcmp(service, "gateway") == 0)
        return cfg->gateway_port;
    if (strcmp(service, "converter") == 0)
        return cfg->metrics_port > 0 ? cfg->metrics_port : CONVERTER_METRICS_PORT;
    if (strcmp(service, "notifier") == 0)
        return cfg->metrics_port > 0 ? cfg->metrics_port : NOTIFIER_METRICS_PORT;
    return -1;
}

/* The address to ask: the bound one, or loopback when bound to every one. */
static const char *probe_host(const struct config *cfg, char *buf, size_t len)
{
    const char *a = cfg->bind_address;
    if (a == NULL || strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0)
        return "127.0.0.1";
    if (strchr(a, ':') != NULL) {
        snprintf(buf, len, "[%s]", a);
        return buf;
    }
    return a;
}

static size_t discard(char *data, size_t size, size_t n, void *ctx)
{
    (void)data;
    (void)ctx;
    return size * n;
}

/* GETs url; 0 for a 200, else 1 with the reason on stderr. *refused is set
 * when nothing listens there. */
static int probe_url(const char *url, bool *refused)
{
    *refused = false;
    CURL *c = curl_easy_init();
    if (c == NULL) {
        fputs("vid2mp3 probe: out of memory\n", stderr);
        return EXIT_FAILURE_RUNTIME;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, PROBE_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode res = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (res != CURLE_OK) {
        *refused = res == CURLE_COULDNT_CONNECT;
        fprintf(stderr, "vid2mp3 probe: %s: %s\n", url, curl_easy_strerror(res));
        return EXIT_FAILURE_RUNTIME;
    }
    if (status != 200) {
        fprintf(stderr, "vid2mp3 probe: %s: HTTP %ld\n", url, status);
        return EXIT_FAILURE_RUNTIME;
    }
    return EXIT_OK;
}

int cli_probe_main(int argc, char **argv)
{
    const char *service = NULL; /* NULL: whichever service listens here */
    const char *path = "/healthz";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ready") == 0)
            path = "/readyz";
        else if (argv[i][0] != '-' && i == 1)
            service = argv[i];
        else {
            fprintf(stderr,
                    "vid2mp3 probe: unexpected argument '%s'\n"
                    "usage: vid2mp3 probe [auth|gateway|converter|notifier|all] [--ready]\n",
                    argv[i]);
            return EXIT_USAGE;
        }
    }
    static const char *const any[] = {"auth", "gateway", "converter", "notifier"};
    static const struct config no_settings; /* only to ask whether the name is known */
    if (service != NULL && service_port(&no_settings, service) < 0) {
        fprintf(stderr, "vid2mp3 probe: unknown service '%s'\n", service);
        return EXIT_USAGE;
    }
    struct config cfg;
    int rc = service_config(&cfg, "probe");
    if (rc != 0)
        return rc;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("vid2mp3 probe: libcurl failed to initialise\n", stderr);
        return EXIT_FAILURE_RUNTIME;
    }
    /* One service named: ask it. None: the first of the four ports where
     * something listens decides (a container runs one service). */
    size_t n = service != NULL ? 1 : sizeof(any) / sizeof(any[0]);
    bool refused = true;
    rc = EXIT_FAILURE_RUNTIME;
    for (size_t i = 0; i < n && refused; i++) {
        char host[80], url[160];
        snprintf(url, sizeof(url), "http://%s:%ld%s", probe_host(&cfg, host, sizeof(host)),
                 service_port(&cfg, service != NULL ? service : any[i]), path);
        rc = probe_url(url, &refused);
    }
    curl_global_cleanup();
    return rc;
}
