// The one mapping from LMDB and errno return codes to absl::Status.

#ifndef TXMQ_LIB_STORAGE_LMDB_STATUS_H_
#define TXMQ_LIB_STORAGE_LMDB_STATUS_H_

#include <lmdb.h>

#include <string_view>

#include "absl/status/status.h"

namespace txmq {

// Converts `rc` (an MDB_* code or an errno value returned by an mdb_*
// function) into a status whose message is "<what>: <LMDB's explanation>".
// MDB_SUCCESS gives OK. The codes:
//   MDB_NOTFOUND, ENOENT                     -> NOT_FOUND
//   MDB_MAP_FULL, MDB_DBS_FULL, MDB_TXN_FULL,
//   MDB_READERS_FULL, ENOSPC, EFBIG, EDQUOT, ENOMEM -> RESOURCE_EXHAUSTED
//   MDB_CORRUPTED, MDB_PAGE_NOTFOUND,
//   MDB_INVALID                              -> DATA_LOSS
//   MDB_VERSION_MISMATCH, MDB_INCOMPATIBLE,
//   MDB_BAD_DBI                              -> FAILED_PRECONDITION
//   MDB_MAP_RESIZED                          -> ABORTED (retry the txn)
//   EACCES, EPERM, EROFS                     -> PERMISSION_DENIED
//   EAGAIN, EBUSY                            -> UNAVAILABLE
//   anything else (MDB_PANIC, EIO, ...)      -> INTERNAL
absl::Status LmdbStatus(int rc, std::string_view what);

}  // namespace txmq

#endif  // TXMQ_LIB_STORAGE_LMDB_STATUS_H_
