#include "storage/lmdb_status.h"

#include <lmdb.h>

#include <cerrno>

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

}  // namespace txmq
