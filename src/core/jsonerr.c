/* jsonerr: see jsonerr.h. */
#include "core/jsonerr.h"

json_t *jsonerr_new(const char *code, const char *message)
{
    return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
}

const char *jsonerr_code_for_status(unsigned status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 411:
        return "length_required";
    case 413:
        return "payload_too_large";
    case 415:
        return "unsupported_media_type";
    case 416:
        return "range_not_satisfiable";
    case 429:
        return "too_many_requests";
    case 503:
        return "service_unavailable";
    default:
        return status >= 500 ? "internal_error" : "bad_request";
    }
}
