#ifndef DEBERTA_CZLIB_SHIM_H
#define DEBERTA_CZLIB_SHIM_H
#include <zlib.h>

// zlib's inflateInit2 is a macro; Swift cannot call it directly.
static inline int deberta_inflate_init_raw(z_stream *stream) {
    return inflateInit2(stream, -MAX_WBITS);
}
#endif
