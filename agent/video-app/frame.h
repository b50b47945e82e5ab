/* Test-card frames for video-app: colour bars as binary PPM (P6) images. */
#ifndef VAPP_FRAME_H_INCLUDED
#define VAPP_FRAME_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define VAPP_FRAME_W 64
#define VAPP_FRAME_H 48

/* Bytes that vapp_frame_render needs for a w x h frame, header included. */
size_t vapp_frame_size(unsigned w, unsigned h);

/* Renders frame n of the animated bars (they scroll one pixel left per
 * frame) into buf as "P6\n<w> <h>\n255\n" + RGB bytes. gray: each pixel is
 * converted to luma (BT.601), so R == G == B everywhere. Returns the bytes
 * written, 0 if w or h is 0 or cap is too small. */
size_t vapp_frame_render(uint8_t *buf, size_t cap, unsigned w, unsigned h, uint64_t n, int gray);

#endif
