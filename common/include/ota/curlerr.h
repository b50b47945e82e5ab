/* libcurl's result codes in our errno vocabulary (ota/err.h): the one
 * mapping every libcurl adapter uses (the agent's transport_curl.c, the
 * server's client.c). Header-only, for the files that already include
 * libcurl; common/ itself links no libcurl. */
#ifndef OTA_CURLERR_H
#define OTA_CURLERR_H

#include <curl/curl.h>
#include <errno.h>

#include "ota/err.h"

/* OTA_E_TLS for a TLS failure (handshake, certificate, pinning, required TLS
 * refused), ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH (name resolution), EINVAL
 * (a malformed URL), ENOMEM; EIO for the rest (a short body, a reset,
 * nothing received, ...). 0 for CURLE_OK. */
static inline int ota_curl_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OK:
        return 0;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return OTA_E_TLS;
    case CURLE_COULDNT_CONNECT:
        return ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return EHOSTUNREACH;
    case CURLE_URL_MALFORMAT:
        return EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return ENOMEM;
    default:
        return EIO;
    }
}

#endif
