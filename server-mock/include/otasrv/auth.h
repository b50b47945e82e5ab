/* Secrets compared without leaking where they differ: every token, token
 * hash and enrollment secret the server checks goes through
 * otasrv_secret_eq() (docs/protocol.md "How the server answers devices"). */
#ifndef OTASRV_AUTH_H
#define OTASRV_AUTH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if the NUL-terminated strings a and b are equal, else 0. The time
 * taken depends on the lengths only, never on the bytes or on the position
 * of the first difference. NULL equals nothing (not even NULL). */
int otasrv_secret_eq(const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif
