/*
 * http_mhd: the libmicrohttpd connection under a request, for the core
 * modules that wrap other parts of libmicrohttpd (form.c). Services do not
 * include this.
 */
#ifndef VID2MP3_HTTP_MHD_H
#define VID2MP3_HTTP_MHD_H

#include "core/http.h"

struct MHD_Connection;

struct MHD_Connection *http_req_connection(const struct http_req *req);

#endif
