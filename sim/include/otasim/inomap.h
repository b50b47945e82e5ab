/* Inode sets and maps: what the power model's rebuild (power.c) keeps per
 * inode of a journal. Open addressing, inode 0 never stored. Private to the
 * simulator. */
#ifndef OTASIM_INOMAP_H
#define OTASIM_INOMAP_H

#include <stddef.h>
#include <stdint.h>

struct otasim_iset {
    uint64_t *v; /* 0 = empty slot; inode 0 is never stored */
    size_t cap;  /* power of two */
    size_t n;
};
/* inode -> a 64-bit value, open addressing: a count (reorder: records of the
 * inode still to keep; the durability bits below) or a path (imap). */
struct otasim_icount {
    uint64_t *ino;
    uint64_t *n;
    size_t cap, len;
};
/* inode -> path of the tree as walked (first name found): an icount whose
 * values are the paths (owned). */
struct otasim_imap {
    struct otasim_icount m;
};

int otasim_iset_add(struct otasim_iset *s, uint64_t k);
int otasim_iset_has(const struct otasim_iset *s, uint64_t k);
uint64_t *otasim_icount_slot(struct otasim_icount *m, uint64_t k);
void otasim_icount_free(struct otasim_icount *m);
uint64_t otasim_icount_get(const struct otasim_icount *m, uint64_t k);
void otasim_imap_clear(struct otasim_imap *m);
int otasim_imap_put(struct otasim_imap *m, uint64_t k, const char *p);
const char *otasim_imap_get(const struct otasim_imap *m, uint64_t k);

#endif
