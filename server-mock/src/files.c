/* File answers. The fd goes to the response (otasrv_resp_fd), which sends from
 * it with sendfile (plain HTTP) or pread (TLS), and owns and closes it. */
#include "otasrv/files.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "otasrv/api_faults.h"
#include "otasrv/faultserve.h"
#include "otasrv/range.h"
#include "otasrv/store.h"

static const char UNSAT[] = "{\"detail\":\"range not satisfiable\"}";

static void http_date(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void add_common(struct otasrv_resp *resp, const char *etag, const char *lastmod,
                       const char *ctype)
{
    otasrv_resp_header(resp, "ETag", etag);
    otasrv_resp_header(resp, "Last-Modified", lastmod);
    otasrv_resp_header(resp, "Accept-Ranges", "bytes");
    if (ctype)
        otasrv_resp_header(resp, "Content-Type", ctype);
}

enum otasrv_result otasrv_files_serve(struct otasrv_req *req, const char *path,
                                      const char *content_type)
{
    const char *range = otasrv_header(req, "Range");
    const char *if_range = otasrv_header(req, "If-Range");
    const char *ctype = content_type ? content_type : "application/octet-stream";
    char etag[96], lastmod[64], cr[OTASRV_FAULT_TEXT_MAX];
    struct otasrv_resp *resp;
    enum otasrv_range_result rr;
    uint64_t start = 0, len, total;
    struct stat st;
    unsigned status = 200;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return otasrv_reply_error(req, 404, "no such file");
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return otasrv_reply_error(req, 404, "no such file");
    }
    total = (uint64_t)st.st_size;
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", total,
             (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec,
             (uint64_t)st.st_ino);
    http_date(st.st_mtim.tv_sec, lastmod, sizeof(lastmod));
    len = total;

    /* If-Range: a strong ETag or the exact date; anything else means the
     * client's copy is stale, so it gets the whole body. */
    if (range && if_range && strcmp(if_range, etag) != 0 && strcmp(if_range, lastmod) != 0)
        range = NULL;
    if (req->has_fault && req->fault.fault.kind == OTASRV_FAULT_IGNORE_RANGE)
        range = NULL; /* fault plan: ignore_range */
    rr = otasrv_range_parse(range, total, &start, &len);
    if (rr == OTASRV_RANGE_UNSATISFIABLE) {
        close(fd);
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, total);
        resp = otasrv_resp_static(UNSAT, sizeof(UNSAT) - 1);
        if (!resp)
            return OTASRV_DROP;
        add_common(resp, etag, lastmod, "application/json");
        otasrv_resp_header(resp, "Content-Range", cr);
        return otasrv_reply(req, 416, resp);
    }
    if (rr == OTASRV_RANGE_PARTIAL)
        status = 206;
    else
        start = 0, len = total;

    if (otasrv_faultserve_body(req)) { /* fault plan: the body goes through the fault */
        if (!(resp = otasrv_faultserve_response(req, fd, start, len)))
            return OTASRV_DROP;
    } else if (!(resp = otasrv_resp_fd(fd, start, len))) {
        return OTASRV_DROP;
    }
    add_common(resp, etag, lastmod, ctype);
    if (status == 206) {
        /* fault plan: content_range may name another total, or garbage */
        otasrv_fault_content_range(req->has_fault ? &req->fault : NULL, start, len, total, cr,
                                   sizeof(cr));
        otasrv_resp_header(resp, "Content-Range", cr);
    }
    return otasrv_reply(req, status, resp);
}

int otasrv_files_release_path(const struct otasrv_srv *srv, const struct otasrv_release *rel,
                              const char *name, char *buf, size_t cap)
{
    size_t pn = strlen(rel->payload_name);

    if (strcmp(name, "payload") == 0 || strcmp(name, rel->payload_name) == 0) {
        if (!rel->payload_path[0])
            return -ENOENT;
        snprintf(buf, cap, "%s", rel->payload_path);
        return 0;
    }
    if (strcmp(name, "manifest.json") != 0 && strcmp(name, "manifest.json.sig") != 0 &&
        !(strncmp(name, rel->payload_name, pn) == 0 && strcmp(name + pn, ".sha256") == 0))
        return -ENOENT;
    snprintf(buf, cap, "%s/%s/%s", srv->releases_dir, rel->id, name);
    return 0;
}
