/*
 * lseek(SEEK_DATA / SEEK_HOLE) for Node, which has no binding for them. The raw driver uses it so that
 * `map` and `convert` see a sparse file's holes exactly as qemu-img does, without reading the holes.
 * Built optionally (scripts/build.mjs); without it the raw driver falls back to reading and zero detection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <unistd.h>

/* seek(fd, offset, whence) -> new offset, or -1 when ENXIO (no more data past offset), throws on other errors */
static napi_value do_seek(napi_env env, napi_callback_info info, int whence) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd = -1;
  double offset = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_double(env, argv[1], &offset) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected (fd, offset)");
    return NULL;
  }
  off_t r = lseek(fd, (off_t)offset, whence);
  napi_value out;
  if (r < 0) {
    if (errno == ENXIO) {
      napi_create_double(env, -1, &out);
      return out;
    }
    napi_throw_error(env, "EIO", "lseek failed");
    return NULL;
  }
  napi_create_double(env, (double)r, &out);
  return out;
}

static napi_value seek_data(napi_env env, napi_callback_info info) { return do_seek(env, info, SEEK_DATA); }
static napi_value seek_hole(napi_env env, napi_callback_info info) { return do_seek(env, info, SEEK_HOLE); }

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "seekData", NAPI_AUTO_LENGTH, seek_data, NULL, &f);
  napi_set_named_property(env, exports, "seekData", f);
  napi_create_function(env, "seekHole", NAPI_AUTO_LENGTH, seek_hole, NULL, &f);
  napi_set_named_property(env, exports, "seekHole", f);
  return exports;
}
