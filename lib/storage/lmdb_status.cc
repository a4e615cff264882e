#include "storage/lmdb_status.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>

#include "absl/strings/str_format.h"

namespace txmq {
namespace {

absl::StatusCode CodeFor(int rc) {
  switch (rc) {
    case MDB_NOTFOUND:
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case MDB_MAP_FULL:
    case MDB_DBS_FULL:
    case MDB_TXN_FULL:
    case MDB_READERS_FULL:
    case ENOSPC:
    case EFBIG:
    case EDQUOT:
    case ENOMEM:
      return absl::StatusCode::kResourceExhausted;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
      return absl::StatusCode::kDataLoss;
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
    case MDB_BAD_DBI:
      return absl::StatusCode::kFailedPrecondition;
    case MDB_MAP_RESIZED:
      return absl::StatusCode::kAborted;
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::StatusCode::kPermissionDenied;
    case EAGAIN:
    case EBUSY:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::Status LmdbStatus(int rc, std::string_view what) {
  if (rc == MDB_SUCCESS) return absl::OkStatus();
  return absl::Status(CodeFor(rc),
                      absl::StrFormat("%s: %s", what, mdb_strerror(rc)));
}

absl::Status CheckDataFileLength(MDB_env* env, std::string_view dir) {
  MDB_envinfo info;
  MDB_stat stat;
  mdb_filehandle_t fd;
  struct stat st;
  if (int rc = mdb_env_info(env, &info); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read the data file's meta page");
  }
  if (int rc = mdb_env_stat(env, &stat); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read the data file's meta page");
  }
  if (int rc = mdb_env_get_fd(env, &fd); rc != MDB_SUCCESS) {
    return LmdbStatus(rc, "cannot read the data file");
  }
  if (fstat(fd, &st) != 0) {
    return LmdbStatus(errno, "cannot read the data file");
  }
  const uint64_t needed =
      (static_cast<uint64_t>(info.me_last_pgno) + 1) * stat.ms_psize;
  if (static_cast<uint64_t>(st.st_size) < needed) {
    return absl::DataLossError(absl::StrFormat(
        "'%s/data.mdb' is truncated: it has %d bytes, but its pages reach "
        "%d; restore the directory from a backup",
        std::string(dir), st.st_size, needed));
  }
  return absl::OkStatus();
}

}  // namespace txmq
