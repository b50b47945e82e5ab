/* libcurl and libarchive, loaded on first use (dlopen) instead of at start.
 *
 * Why: the two libraries pull in ~40 shared objects (gnutls, krb5, ldap,
 * ICU, libxml2, ...). Mapping and relocating them cost ~6 ms of CPU at every
 * start of ota-agent, more than most commands do: `status` needs neither,
 * and only a pass that installs a package reads an archive. The agent links
 * neither library; it calls these functions of the same names, which load
 * the library the first time one of its entry points is called and forward
 * to it. Entry points (curl_global_init, curl_easy_init, archive_read_new)
 * fail as their library documents when it cannot be loaded, with the reason
 * on stderr; the other functions are only reachable with an object that an
 * entry point returned, so their library is loaded by then.
 *
 * The library is loaded RTLD_LOCAL (its own symbols stay its own) with lazy
 * binding (most of its functions are never called), and never unloaded. Single-threaded use
 * (the agent is); the loads are not locked. */
#define CURL_DISABLE_TYPECHECK 1 /* the forwarding definitions below */
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef OTA_LIBCURL_SONAME
#define OTA_LIBCURL_SONAME "libcurl.so.4"
#endif
#ifndef OTA_LIBARCHIVE_SONAME
#define OTA_LIBARCHIVE_SONAME "libarchive.so.13"
#endif

struct lazy_lib {
    const char *soname;
    void *handle;
    int failed;
};

static struct lazy_lib lib_curl = {OTA_LIBCURL_SONAME, NULL, 0};
static struct lazy_lib lib_archive = {OTA_LIBARCHIVE_SONAME, NULL, 0};

/* 0 when loaded; -1 (reason printed once) when it cannot be. */
static int lazy_load(struct lazy_lib *l)
{
    if (l->handle)
        return 0;
    if (l->failed)
        return -1;
    l->handle = dlopen(l->soname, RTLD_LAZY | RTLD_LOCAL);
    if (!l->handle) {
        const char *e = dlerror();
        l->failed = 1;
        fprintf(stderr, "ota-agent: cannot load %s: %s\n", l->soname, e ? e : "unknown error");
        return -1;
    }
    return 0;
}

/* The address of name in l; a missing symbol is a broken installation. */
static void *lazy_sym(struct lazy_lib *l, const char *name)
{
    void *p;

    if (lazy_load(l) < 0)
        abort(); /* unreachable: entry points load first */
    p = dlsym(l->handle, name);
    if (!p) {
        fprintf(stderr, "ota-agent: %s has no %s\n", l->soname, name);
        abort();
    }
    return p;
}

/* A forwarding function; the address is looked up once. */
#define FORWARD(lib, ret, name, params, args)                                                      \
    ret name params                                                                                \
    {                                                                                              \
        static ret(*fn) params;                                                                    \
        if (!fn)                                                                                   \
            fn = (ret(*) params)lazy_sym(&(lib), #name);                                           \
        return fn args;                                                                            \
    }

/* ---- libcurl ---- */

CURLcode curl_global_init(long flags)
{
    static CURLcode (*fn)(long);
    if (lazy_load(&lib_curl) < 0)
        return CURLE_FAILED_INIT;
    if (!fn)
        fn = (CURLcode(*)(long))lazy_sym(&lib_curl, "curl_global_init");
    return fn(flags);
}

CURL *curl_easy_init(void)
{
    static CURL *(*fn)(void);
    if (lazy_load(&lib_curl) < 0)
        return NULL;
    if (!fn)
        fn = (CURL * (*)(void)) lazy_sym(&lib_curl, "curl_easy_init");
    return fn();
}

/* Before a successful curl_global_init there is nothing to clean up. */
void curl_global_cleanup(void)
{
    if (lib_curl.handle)
        ((void (*)(void))lazy_sym(&lib_curl, "curl_global_cleanup"))();
}

/* curl_easy_cleanup(NULL) is allowed before any handle exists. */
void curl_easy_cleanup(CURL *h)
{
    if (h)
        ((void (*)(CURL *))lazy_sym(&lib_curl, "curl_easy_cleanup"))(h);
}

/* The variadic argument of setopt and getinfo is one long, pointer or
 * curl_off_t; on the LP64 ABIs we build for all three travel alike, so it is
 * taken and passed on as a pointer-sized value. */
_Static_assert(sizeof(void *) == sizeof(long) && sizeof(curl_off_t) == sizeof(long),
               "curl varargs forwarding assumes LP64");

CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
    static CURLcode (*fn)(CURL *, CURLoption, ...);
    va_list ap;
    void *v;
    if (!fn)
        fn = (CURLcode(*)(CURL *, CURLoption, ...))lazy_sym(&lib_curl, "curl_easy_setopt");
    va_start(ap, opt);
    v = va_arg(ap, void *);
    va_end(ap);
    return fn(h, opt, v);
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    static CURLcode (*fn)(CURL *, CURLINFO, ...);
    va_list ap;
    void *v;
    if (!fn)
        fn = (CURLcode(*)(CURL *, CURLINFO, ...))lazy_sym(&lib_curl, "curl_easy_getinfo");
    va_start(ap, info);
    v = va_arg(ap, void *);
    va_end(ap);
    return fn(h, info, v);
}

FORWARD(lib_curl, CURLcode, curl_easy_perform, (CURL * h), (h))
FORWARD(lib_curl, const char *, curl_easy_strerror, (CURLcode c), (c))

void curl_easy_reset(CURL *h)
{
    static void (*fn)(CURL *);
    if (!fn)
        fn = (void (*)(CURL *))lazy_sym(&lib_curl, "curl_easy_reset");
    fn(h);
}

/* curl_slist_free_all(NULL) is allowed before any list exists. */
void curl_slist_free_all(struct curl_slist *l)
{
    if (l)
        ((void (*)(struct curl_slist *))lazy_sym(&lib_curl, "curl_slist_free_all"))(l);
}

/* The first header may be appended before any request loaded curl. */
struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s)
{
    static struct curl_slist *(*fn)(struct curl_slist *, const char *);
    if (lazy_load(&lib_curl) < 0)
        return NULL;
    if (!fn)
        fn = (struct curl_slist * (*)(struct curl_slist *, const char *))
            lazy_sym(&lib_curl, "curl_slist_append");
    return fn(l, s);
}

/* ---- libarchive ---- */

struct archive *archive_read_new(void)
{
    static struct archive *(*fn)(void);
    if (lazy_load(&lib_archive) < 0)
        return NULL;
    if (!fn)
        fn = (struct archive * (*)(void)) lazy_sym(&lib_archive, "archive_read_new");
    return fn();
}

/* archive_read_free(NULL) is allowed before any archive exists. */
int archive_read_free(struct archive *a)
{
    if (!a)
        return ARCHIVE_OK;
    return ((int (*)(struct archive *))lazy_sym(&lib_archive, "archive_read_free"))(a);
}

void archive_set_error(struct archive *a, int err, const char *fmt, ...)
{
    static void (*fn)(struct archive *, int, const char *, ...);
    char msg[1024];
    va_list ap;
    if (!fn)
        fn = (void (*)(struct archive *, int, const char *, ...))lazy_sym(&lib_archive,
                                                                          "archive_set_error");
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fn(a, err, "%s", msg);
}

FORWARD(lib_archive, __LA_MODE_T, archive_entry_filetype, (struct archive_entry * e), (e))
FORWARD(lib_archive, const char *, archive_entry_hardlink, (struct archive_entry * e), (e))
FORWARD(lib_archive, time_t, archive_entry_mtime, (struct archive_entry * e), (e))
FORWARD(lib_archive, int, archive_entry_mtime_is_set, (struct archive_entry * e), (e))
FORWARD(lib_archive, long, archive_entry_mtime_nsec, (struct archive_entry * e), (e))
FORWARD(lib_archive, const char *, archive_entry_pathname, (struct archive_entry * e), (e))
FORWARD(lib_archive, const char *, archive_entry_pathname_utf8, (struct archive_entry * e), (e))
FORWARD(lib_archive, __LA_MODE_T, archive_entry_perm, (struct archive_entry * e), (e))
FORWARD(lib_archive, la_int64_t, archive_entry_size, (struct archive_entry * e), (e))
FORWARD(lib_archive, const char *, archive_entry_symlink, (struct archive_entry * e), (e))
FORWARD(lib_archive, int, archive_errno, (struct archive * a), (a))
FORWARD(lib_archive, const char *, archive_error_string, (struct archive * a), (a))
FORWARD(lib_archive, int, archive_filter_code, (struct archive * a, int i), (a, i))
FORWARD(lib_archive, int, archive_filter_count, (struct archive * a), (a))
FORWARD(lib_archive, la_ssize_t, archive_read_data, (struct archive * a, void *b, size_t n),
        (a, b, n))
FORWARD(lib_archive, int, archive_read_data_skip, (struct archive * a), (a))
FORWARD(lib_archive, int, archive_read_next_header, (struct archive * a, struct archive_entry **e),
        (a, e))
FORWARD(lib_archive, int, archive_read_open,
        (struct archive * a, void *d, archive_open_callback *o, archive_read_callback *r,
         archive_close_callback *c),
        (a, d, o, r, c))
FORWARD(lib_archive, int, archive_read_open_filename,
        (struct archive * a, const char *f, size_t bs), (a, f, bs))
FORWARD(lib_archive, const char *, archive_zlib_version, (void), ())
FORWARD(lib_archive, const char *, archive_liblzma_version, (void), ())
FORWARD(lib_archive, const char *, archive_libzstd_version, (void), ())
FORWARD(lib_archive, int, archive_read_support_filter_gzip, (struct archive * a), (a))
FORWARD(lib_archive, int, archive_read_support_filter_xz, (struct archive * a), (a))
FORWARD(lib_archive, int, archive_read_support_filter_zstd, (struct archive * a), (a))
FORWARD(lib_archive, int, archive_read_support_format_ar, (struct archive * a), (a))
FORWARD(lib_archive, int, archive_read_support_format_raw, (struct archive * a), (a))
FORWARD(lib_archive, int, archive_read_support_format_tar, (struct archive * a), (a))
