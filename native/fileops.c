/*
 * The file operations Node has no binding for, built optionally by scripts/build.mjs (block/native.ts loads
 * it; everything that uses it has a fallback or says what it cannot do without it):
 *  - lseek(SEEK_DATA / SEEK_HOLE): the raw driver sees a sparse file's holes exactly as qemu-img does;
 *  - lseek(SEEK_END): the size of a block device, which stat reports as 0;
 *  - open-file-description byte-range locks (F_OFD_SETLK / F_OFD_GETLK): image locks that qemu respects,
 *    taken on the same bytes as qemu's file-posix driver (block/lock.ts says which);
 *  - fallocate(PUNCH_HOLE | KEEP_SIZE): a raw image gives freed space back to the host (sparsify --in-place).
 *  - copy_file_range: convert -C copies a range from file to file inside the kernel (a reflink on btrfs/XFS,
 *    a server-side copy on NFS), on libuv's thread pool so the event loop keeps running.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int get_args(napi_env env, napi_callback_info info, size_t want, int32_t *fd, double *nums) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want || napi_get_value_int32(env, argv[0], fd) != napi_ok) return 0;
  for (size_t i = 1; i < want; i++) {
    if (napi_get_value_double(env, argv[i], &nums[i - 1]) != napi_ok) return 0;
  }
  return 1;
}

static napi_value number(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

/* seek(fd, offset, whence) -> new offset, or -1 when ENXIO (no more data past offset); throws on other errors */
static napi_value do_seek(napi_env env, napi_callback_info info, int whence) {
  int32_t fd = -1;
  double nums[1] = {0};
  if (!get_args(env, info, 2, &fd, nums)) {
    napi_throw_type_error(env, NULL, "expected (fd, offset)");
    return NULL;
  }
  off_t r = lseek(fd, (off_t)nums[0], whence);
  if (r < 0) {
    if (errno == ENXIO) return number(env, -1);
    napi_throw_error(env, "EIO", strerror(errno));
    return NULL;
  }
  return number(env, (double)r);
}

static napi_value seek_data(napi_env env, napi_callback_info info) { return do_seek(env, info, SEEK_DATA); }
static napi_value seek_hole(napi_env env, napi_callback_info info) { return do_seek(env, info, SEEK_HOLE); }

/* sizeOf(fd) -> bytes from lseek(fd, 0, SEEK_END): a block device's size. */
static napi_value size_of(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  double nums[1];
  if (!get_args(env, info, 1, &fd, nums)) {
    napi_throw_type_error(env, NULL, "expected (fd)");
    return NULL;
  }
  off_t r = lseek(fd, 0, SEEK_END);
  if (r < 0) {
    napi_throw_error(env, "EIO", strerror(errno));
    return NULL;
  }
  return number(env, (double)r);
}

/* lockBytes(fd, start, length, shared) -> 0, or the errno (EAGAIN/EACCES when another description holds a conflicting lock).
 * shared = 1 takes a shared (read) lock, 0 releases the range. */
static napi_value lock_bytes(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  double nums[3];
  if (!get_args(env, info, 4, &fd, nums)) {
    napi_throw_type_error(env, NULL, "expected (fd, start, length, shared)");
    return NULL;
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)nums[0];
  fl.l_len = (off_t)nums[1];
  fl.l_type = nums[2] != 0 ? F_RDLCK : F_UNLCK;
  int r = fcntl(fd, F_OFD_SETLK, &fl);
  return number(env, r == 0 ? 0 : errno);
}

/* testBytes(fd, start, length) -> 1 when another open file description holds any lock in the range, 0 when
 * none does, -errno when the test itself failed. Tests for an exclusive lock, as qemu's qemu_lock_fd_test. */
static napi_value test_bytes(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  double nums[2];
  if (!get_args(env, info, 3, &fd, nums)) {
    napi_throw_type_error(env, NULL, "expected (fd, start, length)");
    return NULL;
  }
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)nums[0];
  fl.l_len = (off_t)nums[1];
  fl.l_type = F_WRLCK;
  if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return number(env, -errno);
  return number(env, fl.l_type == F_UNLCK ? 0 : 1);
}

/* punchHole(fd, offset, length) -> 0, or the errno (EOPNOTSUPP where the file system cannot punch holes).
 * The range reads as zeros afterwards and the file keeps its length. */
static napi_value punch_hole(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  double nums[2];
  if (!get_args(env, info, 3, &fd, nums)) {
    napi_throw_type_error(env, NULL, "expected (fd, offset, length)");
    return NULL;
  }
  int r = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)nums[0], (off_t)nums[1]);
  return number(env, r == 0 ? 0 : errno);
}

/* copyRange(fdIn, offIn, fdOut, offOut, length) -> Promise<number>: the bytes copy_file_range copied (looping
 * until `length` is done or it returns 0 at the source's end), or -errno when the first call fails (EXDEV,
 * ENOSYS, EOPNOTSUPP, EINVAL: the caller falls back to read and write). A failure after some bytes resolves with
 * the count so far; the caller copies the rest itself. Runs on the thread pool: a copy without reflinks is
 * a real copy inside the kernel and may take a while. */
typedef struct {
  int fd_in, fd_out;
  int64_t off_in, off_out, length, result;
  napi_async_work work;
  napi_deferred deferred;
} copy_job;

static void copy_execute(napi_env env, void *data) {
  (void)env;
  copy_job *j = data;
  int64_t done = 0;
  while (done < j->length) {
    loff_t in = (loff_t)(j->off_in + done), out = (loff_t)(j->off_out + done);
    size_t want = (size_t)(j->length - done > (1 << 30) ? (1 << 30) : j->length - done);
    ssize_t n = copy_file_range(j->fd_in, &in, j->fd_out, &out, want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (done == 0) done = -(int64_t)errno;
      break;
    }
    if (n == 0) break;
    done += n;
  }
  j->result = done;
}

static void copy_complete(napi_env env, napi_status status, void *data) {
  copy_job *j = data;
  napi_value v;
  napi_create_double(env, status == napi_ok ? (double)j->result : -(double)EIO, &v);
  napi_resolve_deferred(env, j->deferred, v);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value copy_range(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd_in, fd_out;
  double off_in, off_out, length;
  if (argc < 5 || napi_get_value_int32(env, argv[0], &fd_in) != napi_ok || napi_get_value_double(env, argv[1], &off_in) != napi_ok ||
      napi_get_value_int32(env, argv[2], &fd_out) != napi_ok || napi_get_value_double(env, argv[3], &off_out) != napi_ok ||
      napi_get_value_double(env, argv[4], &length) != napi_ok || off_in < 0 || off_out < 0 || length < 0) {
    napi_throw_type_error(env, NULL, "expected (fdIn, offIn, fdOut, offOut, length)");
    return NULL;
  }
  copy_job *j = calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  j->fd_in = fd_in;
  j->fd_out = fd_out;
  j->off_in = (int64_t)off_in;
  j->off_out = (int64_t)off_out;
  j->length = (int64_t)length;
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "copyRange", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, copy_execute, copy_complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "seekData", NAPI_AUTO_LENGTH, seek_data, NULL, &f);
  napi_set_named_property(env, exports, "seekData", f);
  napi_create_function(env, "seekHole", NAPI_AUTO_LENGTH, seek_hole, NULL, &f);
  napi_set_named_property(env, exports, "seekHole", f);
  napi_create_function(env, "sizeOf", NAPI_AUTO_LENGTH, size_of, NULL, &f);
  napi_set_named_property(env, exports, "sizeOf", f);
  napi_create_function(env, "lockBytes", NAPI_AUTO_LENGTH, lock_bytes, NULL, &f);
  napi_set_named_property(env, exports, "lockBytes", f);
  napi_create_function(env, "testBytes", NAPI_AUTO_LENGTH, test_bytes, NULL, &f);
  napi_set_named_property(env, exports, "testBytes", f);
  napi_create_function(env, "punchHole", NAPI_AUTO_LENGTH, punch_hole, NULL, &f);
  napi_set_named_property(env, exports, "punchHole", f);
  napi_create_function(env, "copyRange", NAPI_AUTO_LENGTH, copy_range, NULL, &f);
  napi_set_named_property(env, exports, "copyRange", f);
  return exports;
}
