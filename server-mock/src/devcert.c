/* Device identity by client certificate (docs/protocol.md "Client
 * certificates"). With --tls-client-ca the TLS handshake asks every client
 * for a certificate (optional: the admin API keeps its tokens); on the
 * fleet API's device calls (register, checkin, status, downloads) a
 * certificate the device CA verifies names its device by its subject CN,
 * and must name the device the request acts for (the path's id, the
 * registered id, the device token's owner). A certificate the CA does not
 * verify is refused; no certificate is refused with --require-client-cert.
 * server.c hands us the GnuTLS session; this file reads the certificate. */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <string.h>

#include "otasrv/server.h"

/* The subject CN of the peer's certificate, verified against the trusted
 * device CA, into cn: 0; -ENOENT if the peer sent none; -EACCES with why. */
static int peer_cn(gnutls_session_t s, char *cn, size_t cap, char *why, size_t wcap)
{
    const gnutls_datum_t *chain;
    gnutls_x509_crt_t crt;
    gnutls_datum_t text;
    unsigned n = 0, status = 0;
    size_t len = cap, len2 = 0;
    int rc;

    if (gnutls_certificate_type_get(s) != GNUTLS_CRT_X509)
        return -ENOENT;
    chain = gnutls_certificate_get_peers(s, &n);
    if (!chain || n == 0)
        return -ENOENT;
    if ((rc = gnutls_certificate_verify_peers2(s, &status)) < 0) {
        snprintf(why, wcap, "%s", gnutls_strerror(rc));
        return -EACCES;
    }
    if (status) {
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0) {
            size_t k = (size_t)snprintf(why, wcap, "%s", (const char *)text.data);
            gnutls_free(text.data);
            for (k = k < wcap ? k : wcap - 1; k > 0 && why[k - 1] == ' '; k--)
                why[k - 1] = '\0';
        } else {
            snprintf(why, wcap, "not verified by the device CA");
        }
        return -EACCES;
    }
    if (gnutls_x509_crt_init(&crt) < 0) {
        snprintf(why, wcap, "out of memory");
        return -EACCES;
    }
    rc = gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER);
    if (rc == 0)
        rc = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &len);
    /* exactly one CN: a second one would make the device ambiguous */
    if (rc == 0 && gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 1, 0, NULL,
                                                 &len2) != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        rc = GNUTLS_E_CERTIFICATE_ERROR;
    gnutls_x509_crt_deinit(crt);
    if (rc < 0 || strlen(cn) != len || !otasrv_valid_id(cn)) {
        snprintf(why, wcap, "its subject needs exactly one CN, a device id");
        return -EACCES;
    }
    return 0;
}

int otasrv_devcert_check(struct otasrv_req *req, const char *device_id,
                         enum otasrv_result *ret_reply)
{
    struct otasrv_srv *srv = req->srv;
    gnutls_session_t s;
    char cn[130] = "", why[256] = "";
    int r;

    if (!srv->cfg.tls_client_ca)
        return 0;
    s = otasrv_tls_session(req);
    r = s ? peer_cn(s, cn, sizeof(cn), why, sizeof(why)) : -ENOENT;
    if (r == -ENOENT && !srv->cfg.require_client_cert)
        return 0;
    if (r == -ENOENT)
        *ret_reply = otasrv_reply_error(req, 403,
                                        "a client certificate from the device CA is required "
                                        "(the server runs with --require-client-cert)");
    else if (r < 0)
        *ret_reply = otasrv_reply_error(req, 403, "client certificate refused: %s", why);
    else if (strcmp(cn, device_id) != 0)
        *ret_reply = otasrv_reply_error(
            req, 403, "the client certificate is device %s's, not device %.128s's", cn, device_id);
    else
        return 0;
    return -EPERM;
}
