/* Release files over HTTP: 200 / 206 / 416 with Content-Range, Accept-Ranges,
 * ETag, Last-Modified, If-Range and HEAD. The body goes out from the file
 * descriptor (sendfile on plain HTTP): never read whole into memory.
 *
 * ETag is strong: "<size hex>-<mtime ns hex>-<inode hex>". If-Range matches
 * that ETag or the exact Last-Modified date; otherwise the Range is ignored
 * and the whole body is sent (200). Range rules: range.h. */
#ifndef OTASRV_FILES_H
#define OTASRV_FILES_H

#include "otasrv/server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Answers req with the file at path (404 JSON if it is not there).
 * content_type NULL: application/octet-stream. */
enum otasrv_result otasrv_files_serve(struct otasrv_req *req, const char *path,
                                      const char *content_type);

struct otasrv_release;

/* Path of a file of a release in the server's data dir: "manifest.json",
 * "manifest.json.sig", the payload (by its name, or "payload"), or
 * "<payload>.sha256". -ENOENT for other names. */
int otasrv_files_release_path(const struct otasrv_srv *srv, const struct otasrv_release *rel,
                              const char *name, char *buf, size_t cap) OTA_MUST;

#ifdef __cplusplus
}
#endif
#endif
