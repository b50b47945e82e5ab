/* Colour bars: white, yellow, cyan, green, magenta, red, blue, black (the
 * classic order), full intensity so that the colour/gray difference of the
 * 1.x and 2.x builds is obvious to both eyes and tests. */
#include "frame.h"

#include <stdio.h>
#include <string.h>

static const uint8_t bars[8][3] = {
    {255, 255, 255}, {255, 255, 0}, {0, 255, 255}, {0, 255, 0},
    {255, 0, 255},   {255, 0, 0},   {0, 0, 255},   {0, 0, 0},
};

static int header(char *buf, size_t cap, unsigned w, unsigned h)
{
    return snprintf(buf, cap, "P6\n%u %u\n255\n", w, h);
}

size_t vapp_frame_size(unsigned w, unsigned h)
{
    char hdr[64];
    int n = header(hdr, sizeof(hdr), w, h);

    return (size_t)n + (size_t)w * h * 3;
}

/* Integer BT.601 luma; the weights sum to 256 so white stays 255. */
static uint8_t luma(const uint8_t *rgb)
{
    return (uint8_t)((77u * rgb[0] + 150u * rgb[1] + 29u * rgb[2] + 128u) >> 8);
}

size_t vapp_frame_render(uint8_t *buf, size_t cap, unsigned w, unsigned h, uint64_t n, int gray)
{
    size_t need;
    int hlen;
    uint8_t *p;
    unsigned shift;

    if (w == 0 || h == 0)
        return 0;
    need = vapp_frame_size(w, h);
    if (cap < need)
        return 0;
    hlen = header((char *)buf, cap, w, h);
    p = buf + hlen;
    shift = (unsigned)(n % w);
    for (unsigned y = 0; y < h; y++) {
        for (unsigned x = 0; x < w; x++) {
            const uint8_t *c = bars[((x + shift) % w) * 8 / w];

            if (gray) {
                uint8_t l = luma(c);

                p[0] = p[1] = p[2] = l;
            } else {
                memcpy(p, c, 3);
            }
            p += 3;
        }
    }
    return need;
}
