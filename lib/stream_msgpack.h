/* The stream's msgpack layer, under w2v/stream.h: for the library's
 * sources and the tests that build records by hand; not installed, so
 * that the public headers carry no msgpack type. */
#ifndef W2V_STREAM_MSGPACK_H
#define W2V_STREAM_MSGPACK_H

#include <msgpack.h>

#include "w2v/stream.h"

/* Field lookup in a map; NULL when absent. */
const msgpack_object *w2v_map_get(const msgpack_object *map, const char *key);
/* Decodes a tensor map; returns 0, or -1 with a reason in err. */
int w2v_tensor_decode(const msgpack_object *o, w2v_tensor *t, char *err, size_t errlen);
/* The reader's current record. */
const msgpack_object *w2v_reader_object(const w2v_reader *r);

msgpack_packer *w2v_writer_packer(w2v_writer *w);
int w2v_write_object(w2v_writer *w, const msgpack_object *o);
void w2v_pack_str(msgpack_packer *pk, const char *s);
void w2v_pack_tensor(msgpack_packer *pk, w2v_dtype t, int ndim, const int64_t *shape, const void *data);

#endif
